"""Boost.Intrusive 1.79 red-black tree over *compact* offset_ptr nodes, in place in a buffer.

Theory of operation
-------------------
Both trees of a Boost.Interprocess segment -- the free-block multiset of ``rbtree_best_fit`` and
the named-object ``iset_index`` -- are intrusive red-black trees whose nodes are 24-byte hooks
living *inside* the segment: ``parent``, ``left``, ``right``, each an ``offset_ptr`` (the signed
distance from the field itself to the target; raw ``1`` is null).  Boost.Intrusive picks its
*compact* node for them (``rbtree_node_traits<VoidPointer, OptimizeSize=true>`` with
``pointer_plus_bits``): the node colour is stored in bit 1 of the raw parent word (1 = black).

This module is the counterpart of ``bstree_algorithms`` + ``rbtree_algorithms``: navigation
(minimum / maximum / next_node / prev_node), the link-and-rebalance step used by every insertion
(``insert_commit`` + ``rebalance_after_insertion``), erase with ``rebalance_after_erasure`` and
the rotations.  The step lists follow docs/protocol/boost-1.79-shm.md section 6 *literally*
(which child is linked, which rotation skips the parent fix-up, when colours are copied),
because the shape of the tree decides which of several equal-size free blocks best-fit
returns, and tritonstub must hand out the very same offsets as the C++ stub.

Key-dependent searches are not here: the free tree keys on the block size word next to the hook
and wants its descents inlined for speed (segment.py), the named index compares names.

Representation: a node is named by its **word index** (byte offset // 8) into a signed 64-bit
``memoryview`` of the buffer; ``0`` stands for null (word 0 of a segment is a counter, never a
node).  Every pointer read is bounds-checked against ``lim`` (the last word index a 3-word node
may start at), so a corrupted segment raises through ``corrupt`` instead of reading or writing
outside the buffer.  No locking: the caller holds Triton's ``shm_mutex``.
"""
from __future__ import annotations

from typing import Callable, List, NoReturn, Optional, Tuple

# Compact node layout (word offsets inside a 24-byte hook).
PARENT = 0            # offset_ptr to the parent; bit 1 of the raw word = colour
LEFT = 1              # offset_ptr to the left child
RIGHT = 2             # offset_ptr to the right child
NODE_WORDS = 3

NULL_RAW = 1          # offset_ptr's encoding of a null pointer
COLOUR_BIT = 2        # set = black, clear = red (pointer_plus_bits, one spare bit used)
NOT_COLOUR = ~COLOUR_BIT

# No red-black tree that fits in a 64-bit address space is deeper than 2*log2(2^64 / 24) < 124
# levels; every loop that follows pointers is bounded by this, so a corrupted tree with a cycle
# raises instead of spinning forever while the caller holds shm_mutex.
MAX_DEPTH = 130
DEPTH_RANGE = range(MAX_DEPTH)


CorruptFn = Callable[[str, int], NoReturn]   # (message, byte offset) -> raises


class CompactRBTree:
    """One intrusive red-black tree: its header node and element counter live in the buffer.

    ``q`` is a signed 64-bit memoryview over the buffer, ``header`` and ``count`` are word
    indexes of the header node and of the element counter (the ``size_t`` in front of the
    header in Boost's ``rbtree_impl``).
    """

    __slots__ = ("q", "h", "cnt", "lim", "corrupt")

    def __init__(self, q: memoryview, header: int, count: int, corrupt: CorruptFn):
        self.h = header
        self.cnt = count
        self.corrupt = corrupt
        self.bind(q)

    def bind(self, q: memoryview) -> None:
        """Point at a (new) word view of the same segment."""
        self.q = q
        self.lim = len(q) - NODE_WORDS

    # ------------------------------------------------------------------ pointer fields
    def bad_pointer(self, field: int, raw: int) -> NoReturn:
        self.corrupt(f"tree pointer raw value {raw:#x} points outside the segment", field * 8)

    def parent(self, n: int) -> int:
        r = self.q[n] & NOT_COLOUR
        if r == NULL_RAW:
            return 0
        x = n + (r >> 3)
        if 0 < x <= self.lim:
            return x
        self.bad_pointer(n, r)

    def left(self, n: int) -> int:
        r = self.q[n + 1]
        if r == NULL_RAW:
            return 0
        x = n + 1 + (r >> 3)
        if 0 < x <= self.lim:
            return x
        self.bad_pointer(n + 1, r)

    def right(self, n: int) -> int:
        r = self.q[n + 2]
        if r == NULL_RAW:
            return 0
        x = n + 2 + (r >> 3)
        if 0 < x <= self.lim:
            return x
        self.bad_pointer(n + 2, r)

    def set_parent(self, n: int, p: int) -> None:
        # The colour bit stays: only the pointer part of the word is replaced (2.2).
        q = self.q
        q[n] = (((p - n) << 3) if p else NULL_RAW) | (q[n] & COLOUR_BIT)

    def set_left(self, n: int, x: int) -> None:
        self.q[n + 1] = ((x - n - 1) << 3) if x else NULL_RAW

    def set_right(self, n: int, x: int) -> None:
        self.q[n + 2] = ((x - n - 2) << 3) if x else NULL_RAW

    def is_black(self, n: int) -> bool:
        return bool(self.q[n] & COLOUR_BIT)

    def set_black(self, n: int) -> None:
        self.q[n] |= COLOUR_BIT

    def set_red(self, n: int) -> None:
        self.q[n] &= NOT_COLOUR

    # ------------------------------------------------------------------ header and counter
    def init_header(self) -> None:
        """Empty tree image: parent null (red), left = right = the header itself."""
        h = self.h
        q = self.q
        q[self.cnt] = 0
        q[h] = NULL_RAW
        q[h + 1] = -8
        q[h + 2] = -16

    def count(self) -> int:
        return self.q[self.cnt]

    def root(self) -> int:
        return self.parent(self.h)

    def leftmost(self) -> int:
        return self.left(self.h)

    def rightmost(self) -> int:
        return self.right(self.h)

    # ------------------------------------------------------------------ navigation (6.1)
    def too_deep(self, n: int) -> NoReturn:
        self.corrupt(f"tree path longer than {MAX_DEPTH} nodes (pointer cycle?)", n * 8)

    def minimum(self, n: int) -> int:
        left = self.left
        for _ in DEPTH_RANGE:
            x = left(n)
            if not x:
                return n
            n = x
        self.too_deep(n)

    def maximum(self, n: int) -> int:
        right = self.right
        for _ in DEPTH_RANGE:
            x = right(n)
            if not x:
                return n
            n = x
        self.too_deep(n)

    def next_node(self, x: int) -> int:
        """In-order successor; next(rightmost) is the header (bstree_algorithms::next_node)."""
        right = self.right
        r = right(x)
        if r:
            return self.minimum(r)
        parent = self.parent
        n = x
        p = parent(n)
        for _ in DEPTH_RANGE:
            if n != right(p):
                break
            n = p
            p = parent(p)
        else:
            self.too_deep(n)
        # R(n) == p only when the climb went through the header (the tree's right spine).
        return n if right(n) == p else p

    def prev_node(self, x: int) -> int:
        """In-order predecessor; prev(header) is the rightmost node."""
        if x == self.h:
            return self.right(x)
        lx = self.left(x)
        if lx:
            return self.maximum(lx)
        left = self.left
        parent = self.parent
        p = parent(x)
        for _ in DEPTH_RANGE:
            if x != left(p):
                return p
            x = p
            p = parent(p)
        self.too_deep(x)

    # ------------------------------------------------------------------ rotations (6.5)
    def _rotate_left_nofix(self, p: int, r: int) -> None:
        rl = self.left(r)
        self.set_right(p, rl)
        if rl:
            self.set_parent(rl, p)
        self.set_left(r, p)
        self.set_parent(p, r)

    def _rotate_right_nofix(self, p: int, l: int) -> None:  # noqa: E741
        lr = self.right(l)
        self.set_left(p, lr)
        if lr:
            self.set_parent(lr, p)
        self.set_right(l, p)
        self.set_parent(p, l)

    def _replace_child(self, parent: int, was_left: bool, child: int) -> None:
        # Put child into parent's slot; a header parent means child becomes the root (and the
        # header's leftmost / rightmost are deliberately not touched).
        if parent == self.h:
            self.set_parent(parent, child)
        elif was_left:
            self.set_left(parent, child)
        else:
            self.set_right(parent, child)

    def _rotate_left(self, p: int, r: int) -> None:
        q = self.parent(p)
        was_left = self.left(q) == p
        self._rotate_left_nofix(p, r)
        self.set_parent(r, q)
        self._replace_child(q, was_left, r)

    def _rotate_right(self, p: int, l: int) -> None:  # noqa: E741
        q = self.parent(p)
        was_left = self.left(q) == p
        self._rotate_right_nofix(p, l)
        self.set_parent(l, q)
        self._replace_child(q, was_left, l)

    # ------------------------------------------------------------------ insertion (6.2, 6.3)
    def link(self, y: int, z: int, link_left: bool) -> None:
        """insert_commit: hang new node z under y (the header when the tree is empty), rebalance
        and bump the counter.  z's stale hook words are overwritten except its colour bit, which
        the fix-up sets anyway."""
        h = self.h
        if y == h:
            self.set_parent(h, z)
            self.set_left(h, z)
            self.set_right(h, z)
        elif link_left:
            self.set_left(y, z)
            if y == self.left(h):
                self.set_left(h, z)
        else:
            self.set_right(y, z)
            if y == self.right(h):
                self.set_right(h, z)
        self.set_parent(z, y)
        q = self.q
        q[z + 1] = NULL_RAW
        q[z + 2] = NULL_RAW
        self._rebalance_after_insertion(z)
        q[self.cnt] += 1

    def _rebalance_after_insertion(self, p: int) -> None:
        q = self.q
        h = self.h
        parent = self.parent
        left = self.left
        q[p] &= NOT_COLOUR
        for _ in DEPTH_RANGE:
            pp = parent(p)
            if pp == h or q[pp] & COLOUR_BIT:
                break
            g = parent(pp)
            if g == h:
                break
            q[g] &= NOT_COLOUR
            gl = left(g)
            pp_is_left = pp == gl
            u = self.right(g) if pp_is_left else gl
            if u and not q[u] & COLOUR_BIT:
                q[u] |= COLOUR_BIT
                q[pp] |= COLOUR_BIT
                p = g
                continue
            p_is_left = left(pp) == p
            if pp_is_left:
                if not p_is_left:
                    self._rotate_left_nofix(pp, p)
                    pp = p
                self._rotate_right(g, pp)
            else:
                if p_is_left:
                    self._rotate_right_nofix(pp, p)
                    pp = p
                self._rotate_left(g, pp)
            q[pp] |= COLOUR_BIT
            break
        else:
            self.too_deep(p)
        root = parent(h)
        if root:
            q[root] |= COLOUR_BIT

    def replace_sole(self, z: int, r: int) -> None:
        """``erase(z)`` then ``link(header, r, True)`` when z is the tree's only node, in one
        step: r becomes the black root and both ends; the counter stays 1. This is the steady
        state of a region whose free space is one block (every allocation splits it), so the
        allocator takes it; the words written are exactly those of the two-step sequence."""
        q = self.q
        h = self.h
        q[h] = ((r - h) << 3) | (q[h] & COLOUR_BIT)
        q[h + 1] = (r - h - 1) << 3
        q[h + 2] = (r - h - 2) << 3
        self._lone_root_hook(r)

    def _lone_root_hook(self, r: int) -> None:
        """r's hook as the childless black root: parent = the header, no children."""
        q = self.q
        q[r] = ((self.h - r) << 3) | COLOUR_BIT
        q[r + 1] = NULL_RAW
        q[r + 2] = NULL_RAW

    def replace_sole_run(self, nodes) -> None:
        """``replace_sole(..., n)`` for each n of ``nodes`` in turn: every n keeps the hook
        that made it the black root and both ends, and the header ends at the last one."""
        for r in nodes[:-1]:
            self._lone_root_hook(r)
        self.replace_sole(0, nodes[-1])

    def is_pair(self, a: int, b: int) -> bool:
        """True when the tree holds exactly a and b, a first in order: one is the black root,
        the other its red childless child on that side, and the header's ends are a and b."""
        q = self.q
        h = self.h
        if q[self.cnt] != 2 or self.left(h) != a or self.right(h) != b:
            return False
        root = self.root()
        if root == b:
            child = a
            shape = self.left(b) == a and q[b + 2] == NULL_RAW
        elif root == a:
            child = b
            shape = self.right(a) == b and q[a + 1] == NULL_RAW
        else:
            return False
        return bool(shape and q[root] & COLOUR_BIT and not q[child] & COLOUR_BIT
                    and q[child + 1] == NULL_RAW and q[child + 2] == NULL_RAW
                    and self.parent(child) == root and self.parent(root) == h)

    def merge_pair(self, a: int, b: int) -> None:
        """When :meth:`is_pair` (a, b): ``erase(a)``, ``erase(b)``, then a re-inserted into the
        empty tree, in one step. The words written: b is left with the hook of a childless
        black root (its parent word is the header's, its left was cleared with a), a is the
        only node (replace_sole's words) and the counter is 1."""
        self._lone_root_hook(b)
        self.replace_sole(b, a)
        self.q[self.cnt] = 1

    # ------------------------------------------------------------------ erase (6.4)
    def erase(self, z: int) -> None:
        """Unlink z, rebalance and decrement the counter.  z's hook words are left as they are
        (Boost's "normal link" mode)."""
        q = self.q
        h = self.h
        left = self.left
        right = self.right
        set_parent = self.set_parent
        zl = left(z)
        zr = right(z)
        if not zl:
            x = zr
            y = z
        elif not zr:
            x = zl
            y = z
        else:
            y = self.minimum(zr)
            x = right(y)
        zp = self.parent(z)
        z_is_left = left(zp) == z
        if y != z:
            # Two children: the successor y takes z's place.
            set_parent(zl, y)
            self.set_left(y, zl)
            if y != zr:
                self.set_right(y, zr)
                set_parent(zr, y)
                xp = self.parent(y)
                if x:
                    set_parent(x, xp)
                self.set_left(xp, x)
            else:
                xp = y
            set_parent(y, zp)
            self._replace_child(zp, z_is_left, y)
        else:
            xp = zp
            if x:
                set_parent(x, zp)
            self._replace_child(zp, z_is_left, x)
            if left(h) == z:
                self.set_left(h, self.minimum(zr) if zr else zp)
            if right(h) == z:
                self.set_right(h, self.maximum(zl) if zl else zp)
        if y != z:
            removed_black = q[y] & COLOUR_BIT
            q[y] = (q[y] & NOT_COLOUR) | (q[z] & COLOUR_BIT)
        else:
            removed_black = q[z] & COLOUR_BIT
        if removed_black:
            self._rebalance_after_erasure(x, xp)
        q[self.cnt] -= 1

    def _rebalance_after_erasure(self, x: int, xp: int) -> None:
        q = self.q
        h = self.h
        left = self.left
        right = self.right
        for _ in DEPTH_RANGE:
            if xp == h or x and not q[x] & COLOUR_BIT:
                break
            if x == left(xp):
                w = right(xp)
                if not w:
                    self.corrupt("red-black erase found no sibling (black heights differ)", xp * 8)
                if not q[w] & COLOUR_BIT:
                    q[w] |= COLOUR_BIT
                    q[xp] &= NOT_COLOUR
                    self._rotate_left(xp, w)
                    w = right(xp)
                wl = left(w)
                wr = right(w)
                if (not wl or q[wl] & COLOUR_BIT) and (not wr or q[wr] & COLOUR_BIT):
                    q[w] &= NOT_COLOUR
                    x = xp
                    xp = self.parent(xp)
                    continue
                if not wr or q[wr] & COLOUR_BIT:
                    q[wl] |= COLOUR_BIT
                    q[w] &= NOT_COLOUR
                    self._rotate_right(w, wl)
                    w = right(xp)
                q[w] = (q[w] & NOT_COLOUR) | (q[xp] & COLOUR_BIT)
                q[xp] |= COLOUR_BIT
                wr = right(w)
                if wr:
                    q[wr] |= COLOUR_BIT
                self._rotate_left(xp, w)
                break
            else:
                w = left(xp)
                if not w:
                    self.corrupt("red-black erase found no sibling (black heights differ)", xp * 8)
                if not q[w] & COLOUR_BIT:
                    q[w] |= COLOUR_BIT
                    q[xp] &= NOT_COLOUR
                    self._rotate_right(xp, w)
                    w = left(xp)
                wl = left(w)
                wr = right(w)
                if (not wr or q[wr] & COLOUR_BIT) and (not wl or q[wl] & COLOUR_BIT):
                    q[w] &= NOT_COLOUR
                    x = xp
                    xp = self.parent(xp)
                    continue
                if not wl or q[wl] & COLOUR_BIT:
                    q[wr] |= COLOUR_BIT
                    q[w] &= NOT_COLOUR
                    self._rotate_left(w, wr)
                    w = left(xp)
                q[w] = (q[w] & NOT_COLOUR) | (q[xp] & COLOUR_BIT)
                q[xp] |= COLOUR_BIT
                wl = left(w)
                if wl:
                    q[wl] |= COLOUR_BIT
                self._rotate_right(xp, w)
                break
        else:
            self.too_deep(xp)
        if x:
            q[x] |= COLOUR_BIT

    # ------------------------------------------------------------------ validation
    def validate(self, key: Optional[Callable[[int], object]] = None,
                 strict: bool = False) -> Tuple[List[int], int]:
        """Check every structural invariant and return (nodes in order, black height).

        Checks the raw pointer encodings, that each child's parent points back, that no node is
        reached twice (so cycles end the walk), red-red, equal black heights, root black and
        header red, leftmost/rightmost, the counter, and -- with ``key`` -- that in-order keys
        never decrease (``strict``: always increase).  Raises through ``corrupt``.
        """
        q = self.q
        h = self.h
        bad = self.corrupt
        lim = self.lim
        if q[h] & COLOUR_BIT:
            bad("tree header is black (must be red)", h * 8)
        raw = q[h]
        if raw & 1 and raw & NOT_COLOUR != NULL_RAW or raw & 4:
            bad(f"misaligned parent offset_ptr raw value {raw:#x}", h * 8)
        for f in (h + 1, h + 2):
            if q[f] & 7 and q[f] != NULL_RAW:
                bad(f"misaligned offset_ptr raw value {q[f]:#x}", f * 8)
        root = self.parent(h)
        if not root:
            if self.left(h) != h or self.right(h) != h:
                bad("empty tree but header left/right do not point at the header", h * 8)
            if q[self.cnt] != 0:
                bad(f"empty tree but element count is {q[self.cnt]}", self.cnt * 8)
            return [], 0
        if not q[root] & COLOUR_BIT:
            bad("tree root is red", root * 8)
        if self.parent(root) != h:
            bad("tree root's parent is not the header", root * 8)
        order: List[int] = []
        max_nodes = lim // NODE_WORDS + 1
        black_height = -1
        # Iterative in-order walk; the stack holds (node, blacks on the path above incl. node).
        stack: List[Tuple[int, int]] = []
        n = root
        blacks = 0
        prev_key = None
        while stack or n:
            while n:
                raw = q[n]
                if raw & 1 and raw & NOT_COLOUR != NULL_RAW or raw & 4:
                    bad(f"misaligned parent offset_ptr raw value {raw:#x}", n * 8)
                for f in (n + 1, n + 2):
                    if q[f] & 7 and q[f] != NULL_RAW:
                        bad(f"misaligned offset_ptr raw value {q[f]:#x}", f * 8)
                black = 1 if raw & COLOUR_BIT else 0
                nb = blacks + black
                l_ = self.left(n)
                r_ = self.right(n)
                for c in (l_, r_):
                    if c:
                        if c == h:
                            bad("a tree node links back to the header as a child", n * 8)
                        if self.parent(c) != n:
                            bad("child's parent pointer does not point back", c * 8)
                        if not black and not q[c] & COLOUR_BIT:
                            bad("red node has a red child", c * 8)
                if l_ and l_ == r_:
                    bad("node has the same left and right child", n * 8)
                if not l_ or not r_:
                    if black_height < 0:
                        black_height = nb
                    elif black_height != nb:
                        bad("black heights differ", n * 8)
                stack.append((n, nb))
                n = l_
                blacks = nb
            n, blacks = stack.pop()
            order.append(n)
            if len(order) > max_nodes:
                bad("tree has more nodes than fit in the segment (cycle?)", n * 8)
            if key is not None:
                k = key(n)
                if prev_key is not None and (k < prev_key or (strict and not prev_key < k)):
                    bad("tree keys out of order", n * 8)
                prev_key = k
            n = self.right(n)
        if self.left(h) != order[0]:
            bad("header's leftmost is not the minimum node", (h + 1) * 8)
        if self.right(h) != order[-1]:
            bad("header's rightmost is not the maximum node", (h + 2) * 8)
        if q[self.cnt] != len(order):
            bad(f"element count {q[self.cnt]} but {len(order)} nodes in the tree", self.cnt * 8)
        return order, black_height

"""The Boost 1.79 managed segment inside a python-backend region, as a pure allocator core.

Theory of operation
-------------------
Every python-backend shm region starts with a Boost.Interprocess ``managed_external_buffer``:
``segment_manager<char, rbtree_best_fit<null_mutex_family, offset_ptr<void>, 0>, iset_index>``.
The C++ stub and server allocate from it directly, so tritonstub must reproduce it bit for bit
(docs/protocol/boost-1.79-shm.md is the spec; its section numbers are cited below).

* **Header** (offset 0, 120 bytes): the ``rbtree_best_fit`` object -- the free-block multiset
  (element count + tree header node), ``m_extra_hdr_bytes``, ``m_allocated``, ``m_size`` --
  followed by the segment manager's two ``iset_index`` containers (named and unique objects).
  There is no mutex: Boost uses ``null_mutex_family`` and Triton's named ``"shm_mutex"`` guards
  every call, so nothing here locks -- the caller holds that mutex.
* **Blocks** (from offset 128 to an end sentinel): each starts with ``prev_size`` and a bit-field
  word (size in 16-byte units, prev_allocated = bit 62, allocated = bit 63).  Allocated blocks
  hand out ``block + 16``; a free block carries a compact red-black tree hook at ``+16``
  (``rbtree_best_fit::block_ctrl``).  The first block's ``prev_size`` and the sentinel's size
  hold the first-to-sentinel distance.
* **Allocation** is ``rbtree_best_fit::priv_allocate``: best fit = ``lower_bound`` on the free
  multiset, split off the high remainder when it is at least 3 units (re-inserted with the erased
  block's successor as the hint: ``multiset::insert_equal(hint, ...)``), otherwise take the block
  whole.  ``priv_deallocate`` coalesces eagerly with both neighbours and re-inserts with the
  upper-bound descent.  ``priv_allocate_aligned`` over-allocates, cuts the block at an aligned
  address and frees the leading and trailing pieces; ``grow`` turns the old end sentinel into a
  block and frees it.  Tie-breaking among equal-size free blocks depends on the exact shape of
  the tree, so every step list of section 6/7 is followed literally (see rbtree.py for the
  ``bstree_algorithms`` / ``rbtree_algorithms`` part).
* **Runs** (:meth:`ManagedSegment.allocate_run`, :meth:`ManagedSegment.free_run`): the
  stub builds and frees the same few blocks for every request, out of and back into the
  region's only free block (or between the only two). There the final words of a whole run of
  allocations or frees are known without taking each step, and are written at once; in any
  other state the run is refused and the caller goes one by one. The bytes are those of the
  one-by-one steps, checked against the Boost model.
* **Named objects** (``segment_manager::find_or_construct`` over ``iset_index``): ordinary
  allocated blocks holding an index hook, a 16-byte ``block_header``, the value and the name,
  indexed by (name length, name bytes).

Implementation notes: the buffer (a ``bytearray`` in tests, an ``mmap`` in production) is viewed
as signed (``q``, for offset_ptr arithmetic) and unsigned (``Q``, for bit-field words) 64-bit
words, and all internal positions are *word* indexes (byte offset // 8).  The hot paths inline
the pointer decoding and keep views in locals.  Every access is bounds-checked: a corrupted
segment or a bad handle raises ``SegmentCorrupted`` / ``BadHandle`` naming the region and the
offset, never ``IndexError``, and never touches memory outside the buffer.

Why one file of this size: the block walk, the best-fit search, split/coalesce and the two
indexes share the word views and the inlined pointer decoding that keep the hot path fast, and
they are checked together against one oracle. The named index (the last part) could follow
Boost's own rbtree_best_fit / iset_index split if it grows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, NamedTuple, NoReturn, Optional, Tuple, Union

from ..errors import BadHandle, NotASegment, OutOfMemory, SegmentCorrupted, ShmError
from .rbtree import DEPTH_RANGE, MAX_DEPTH, NOT_COLOUR, NULL_RAW, CompactRBTree

# ================================================================================================
# Layout of a Boost 1.79 managed_external_buffer on x86_64
# (docs/protocol/boost-1.79-shm.md sections 1-4, 8).
# Byte offsets from the segment start.  The *_W names are the same positions as 64-bit word
# indexes, which is what the code below works with.
# ================================================================================================
HDR_FREE_COUNT = 0        # rbtree_best_fit: free multiset element count
HDR_FREE_TREE = 8         #   free multiset rbtree header node (root, leftmost, rightmost)
HDR_EXTRA_BYTES = 32      # m_extra_hdr_bytes (the segment manager's two indexes)
HDR_ALLOCATED = 40        # m_allocated: whole-block bytes of all allocated blocks
HDR_SIZE = 48             # m_size: managed bytes (= region size, grows)
HDR_NAMED_COUNT = 56      # segment_manager: named iset_index element count
HDR_NAMED_TREE = 64       #   named index rbtree header node
HDR_UNIQUE_COUNT = 88     # unique iset_index element count (unused by Triton)
HDR_UNIQUE_TREE = 96      #   unique index rbtree header node
HDR_BYTES = 120           # sizeof(segment_manager); 8 never-written bytes follow
EXTRA_HDR_BYTES = 64      # expected m_extra_hdr_bytes (120 - sizeof(rbtree_best_fit) = 56)
FIRST_BLOCK = 128         # round_up(56 + 64, Alignment)
MIN_SEGMENT = 192         # segment_manager::get_min_size()

UNIT = 16                 # Alignment: block sizes are counted in 16-byte units
BLOCK_PREV_SIZE = 0       # block +0: prev_size (units), meaningful when the previous is free
BLOCK_BITS = 8            # block +8: size (bits 0-61) | prev_allocated (62) | allocated (63)
BLOCK_HDR = 16            # SizeHolder: the user area starts at block + 16
FREE_HOOK = 16            # free block: rbtree hook at block + 16
MIN_BLOCK_UNITS = 3       # block_ctrl (16 + 24-byte hook) rounded up: the smallest block
SENTINEL_UNITS = 1        # end sentinel: one unit at the end of the segment
USABLE_BY_NEXT = 8        # UsableByPreviousChunk: user area overlaps the next prev_size
ZEROED_BY_ALLOCATE = 32   # priv_allocate zeroes user bytes 0-31 (the stale free-tree hook)
SIZE_MASK = (1 << 62) - 1
PREV_ALLOCATED = 1 << 62
ALLOCATED = 1 << 63
FLAG_MASK = PREV_ALLOCATED | ALLOCATED
CLEAR_PREV_ALLOCATED = ((1 << 64) - 1) ^ PREV_ALLOCATED
CLEAR_ALLOCATED = ((1 << 64) - 1) ^ ALLOCATED

# Aligned allocation (priv_allocate_aligned): over-allocate by two minimum blocks less a header.
ALIGNED_EXTRA = 2 * MIN_BLOCK_UNITS * UNIT - BLOCK_HDR          # 80

# Named-object allocation (iset_index value type), offsets from the user pointer u.
NAMED_HOOK = 0            # 24-byte compact index hook; the tree node is u itself
NAMED_BLOCK_HEADER = 24   # boost::interprocess::block_header<size_type>, 16 bytes:
NAMED_VALUE_BYTES = 24    #   u64 value bytes (sizeof(T) * count)
NAMED_NUM_CHAR = 32       #   u16 name length without the NUL
NAMED_VALUE_ALIGN = 34    #   u8 alignof(T)
NAMED_TYPE = 35           #   u8 (alloc_type << 5) | sizeof(char)
NAMED_PADDING = 36        #   4 bytes never read (0 in live regions)
NAMED_HEADER_BYTES = 16
NAMED_TYPE_BYTE = 0x21    # named_type (1) << 5 | sizeof(char) (1)

# Word indexes (byte offset // 8).
_FREE_COUNT_W = HDR_FREE_COUNT // 8
_FREE_TREE_W = HDR_FREE_TREE // 8
_EXTRA_W = HDR_EXTRA_BYTES // 8
_ALLOCATED_W = HDR_ALLOCATED // 8
_SIZE_W = HDR_SIZE // 8
_NAMED_COUNT_W = HDR_NAMED_COUNT // 8
_NAMED_TREE_W = HDR_NAMED_TREE // 8
_UNIQUE_COUNT_W = HDR_UNIQUE_COUNT // 8
_UNIQUE_TREE_W = HDR_UNIQUE_TREE // 8
_FIRST_W = FIRST_BLOCK // 8
_UNIT_W = UNIT // 8       # words per unit (2): block index + units * 2 = next block
_HOOK_W = FREE_HOOK // 8  # free-tree node = block index + 2; user word = block index + 2
_MIN_USER = FIRST_BLOCK + BLOCK_HDR

_HANDLED = (IndexError, ValueError, OverflowError)   # what a corrupted word can make Python raise


def units_for(nbytes: int) -> int:
    """Block units for a request of ``nbytes`` user bytes (4.5: priv_get_total_units)."""
    n = nbytes if nbytes > USABLE_BY_NEXT else USABLE_BY_NEXT
    units = ((n - USABLE_BY_NEXT + UNIT - 1) >> 4) + 1
    return units if units > MIN_BLOCK_UNITS else MIN_BLOCK_UNITS


def usable_bytes(units: int) -> int:
    """User bytes of an allocated block of ``units`` units (it may use the next prev_size)."""
    return (units - 1) * UNIT + USABLE_BY_NEXT


class Block(NamedTuple):
    """One block of the walk: byte offset of its header, size in units, allocated bit."""
    offset: int
    units: int
    allocated: bool

    @property
    def user_offset(self) -> int:
        return self.offset + BLOCK_HDR

    @property
    def nbytes(self) -> int:
        return self.units * UNIT


@dataclass(frozen=True)
class SegmentReport:
    """What ``ManagedSegment.check`` found in a consistent segment."""
    size: int                      # m_size
    allocated: int                 # m_allocated (bytes, block headers included)
    free_memory: int               # get_free_memory()
    sentinel: int                  # byte offset of the end sentinel
    slack: int                     # dead bytes after the sentinel (m_size % 16 tail)
    blocks: int                    # real blocks (sentinel excluded)
    allocated_blocks: int
    free_blocks: int
    free_bytes: int                # sum of the free blocks
    largest_free: int              # bytes of the largest free block (0 if none)
    free_tree_black_height: int
    named: Tuple[Tuple[str, int, int], ...]    # (name, value offset, value bytes), index order


NameLike = Union[str, bytes]


def _name_bytes(name: NameLike) -> bytes:
    nb = name.encode("utf-8") if isinstance(name, str) else bytes(name)
    if b"\0" in nb:
        raise ValueError(f"object name {name!r} contains a NUL byte")
    if len(nb) > 0xFFFF:
        raise ValueError("object name longer than 65535 bytes")
    return nb


def _corruption_raiser(region: Optional[str]):
    def corrupt(msg: str, offset: Optional[int]) -> NoReturn:
        raise SegmentCorrupted(msg, region=region, offset=offset)
    return corrupt


class ManagedSegment:
    """A Boost 1.79 ``managed_external_buffer`` laid over ``buf`` (see the module docstring).

    Opening (``ManagedSegment(buf)``) validates the header cheaply; ``create`` formats a fresh
    segment.  Offsets in and out are byte offsets from the segment start (Boost handles).  The
    caller must hold Triton's ``shm_mutex`` around every call.
    """

    __slots__ = ("region", "_m", "_q", "_Q", "_nw", "_lim", "_ro", "_free", "_named", "_unique")

    def __init__(self, buf, *, region: Optional[str] = None):
        self.region = region
        self._attach(buf)
        try:
            self._validate_header()
        except BaseException:
            self._release()
            raise

    @classmethod
    def create(cls, buf, size: Optional[int] = None, *,
               region: Optional[str] = None) -> "ManagedSegment":
        """Format a fresh segment of ``size`` bytes (default: the whole buffer), as
        ``managed_external_buffer(create_only, base, size)`` does (7.1); no named objects."""
        self = cls.__new__(cls)
        self.region = region
        self._attach(buf)
        if size is None:
            size = len(self._m)
        if not isinstance(size, int) or not MIN_SEGMENT <= size <= len(self._m):
            self._release()
            raise ValueError(f"segment size must be an int in [{MIN_SEGMENT}, {len(self._m)}] "
                             f"(the buffer length), got {size!r}")
        if self._ro:
            self._release()
            self._readonly()
        Q = self._Q
        self._free.init_header()
        Q[_EXTRA_W] = EXTRA_HDR_BYTES
        Q[_ALLOCATED_W] = 0
        Q[_SIZE_W] = size
        self._named.init_header()
        self._unique.init_header()
        # One free block from 128 to the sentinel.  Its word is reset first (block_ctrl()),
        # the sentinel's flag bits are set one by one, as Boost's bit-field writes do.
        f = _FIRST_W
        units = (size - FIRST_BLOCK) // UNIT - SENTINEL_UNITS
        e = f + units * _UNIT_W
        Q[f + 1] = units
        Q[e + 1] = units | ALLOCATED          # mark_free(F) cleared prev_allocated; then allocated
        Q[e] = units                          # mark_free(F): sentinel's prev_size
        Q[f] = units                          # first block's prev_size = distance to the sentinel
        Q[f + 1] |= PREV_ALLOCATED
        self._insert_upper(f + _HOOK_W, units)
        return self

    # ------------------------------------------------------------------ buffer binding
    def _attach(self, buf) -> None:
        m = memoryview(buf)
        if m.format != "B" or m.ndim != 1:
            try:
                cast = m.cast("B")
            except TypeError as e:
                m.release()
                raise TypeError(f"segment buffer must be a contiguous byte buffer: {e}") from None
            m.release()
            m = cast
        nw = len(m) >> 3
        words = m[:nw << 3]          # a length that is not a multiple of 8 cannot be cast
        self._q = words.cast("q")    # signed: offset_ptr arithmetic
        self._Q = words.cast("Q")    # unsigned: bit-field words, sizes, counters
        words.release()
        self._m = m
        self._nw = nw
        self._lim = nw - 3
        self._ro = m.readonly
        if getattr(self, "_named", None) is None:
            # The trees raise through a closure over the region name, not a bound method:
            # no reference cycle, so dropping the segment releases the buffer at once.
            corrupt = _corruption_raiser(self.region)
            self._free = CompactRBTree(self._q, _FREE_TREE_W, _FREE_COUNT_W, corrupt)
            self._named = CompactRBTree(self._q, _NAMED_TREE_W, _NAMED_COUNT_W, corrupt)
            self._unique = CompactRBTree(self._q, _UNIQUE_TREE_W, _UNIQUE_COUNT_W, corrupt)
        else:
            for t in (self._free, self._named, self._unique):
                t.bind(self._q)

    def _release(self) -> None:
        for v in (self._q, self._Q, self._m):
            v.release()

    def rebind(self, buf) -> None:
        """Use a new mapping of the same segment (after the region was remapped, usually
        bigger).  The old buffer is released, so its mmap can be closed."""
        old = (self._q, self._Q, self._m)
        self._attach(buf)
        try:
            self._validate_header()
        except BaseException:
            self._release()
            # Keep the segment usable over the old buffer when the new one is rejected.
            self._q, self._Q, self._m = old
            self._nw = len(self._q)
            self._lim = self._nw - 3
            self._ro = self._m.readonly
            for t in (self._free, self._named, self._unique):
                t.bind(self._q)
            raise
        for v in old:
            v.release()

    def close(self) -> None:
        """Drop the views of the buffer (the segment is unusable afterwards)."""
        self._release()

    def _validate_header(self) -> None:
        """Cheap open-time check that ``buf`` holds a segment Triton laid out."""
        n = len(self._m)
        if n < MIN_SEGMENT:
            self._not_a_segment(f"buffer is {n} bytes, smaller than the {MIN_SEGMENT}-byte "
                                "minimum Boost segment", None)
        Q = self._Q
        extra = Q[_EXTRA_W]
        if extra != EXTRA_HDR_BYTES:
            self._not_a_segment(f"m_extra_hdr_bytes is {extra}, expected {EXTRA_HDR_BYTES}: not "
                                "a Boost 1.79 managed_external_buffer", HDR_EXTRA_BYTES)
        size = Q[_SIZE_W]
        if not MIN_SEGMENT <= size <= n:
            self._not_a_segment(f"m_size is {size} but the mapping has {n} bytes (expected "
                                f"{MIN_SEGMENT} <= m_size <= mapping size)", HDR_SIZE)
        e = self._sentinel_w(size)
        dist = (e - _FIRST_W) // _UNIT_W
        if Q[_FIRST_W] != dist:
            self._not_a_segment(f"first block's distance to the end sentinel is {Q[_FIRST_W]} "
                                f"units, expected {dist} from m_size {size}", FIRST_BLOCK)
        w = Q[e + 1]
        if not w & ALLOCATED or w & SIZE_MASK != dist:
            self._not_a_segment(f"end sentinel word {w:#x} does not say allocated / {dist} units",
                                e * 8 + BLOCK_BITS)

    # ------------------------------------------------------------------ errors
    def _corrupt(self, msg: str, offset: Optional[int]) -> NoReturn:
        raise SegmentCorrupted(msg, region=self.region, offset=offset)

    def _not_a_segment(self, msg: str, offset: Optional[int]) -> NoReturn:
        raise NotASegment(msg, region=self.region, offset=offset)

    def _bad_handle(self, msg: str, offset: Optional[int]) -> NoReturn:
        raise BadHandle(msg, region=self.region, offset=offset)

    def _readonly(self) -> NoReturn:
        raise ShmError("the segment's buffer is read-only", region=self.region)

    def _wrapped(self, e: BaseException) -> ShmError:
        try:
            size = self._Q[_SIZE_W]
        except ValueError:       # the views were released by close()
            return ShmError("the segment was closed", region=self.region)
        if size > len(self._m):
            msg = (f"m_size is {size} but only {len(self._m)} bytes are mapped: the peer grew "
                   "the region, remap and rebind first")
        else:
            msg = f"segment data points outside the mapped buffer ({type(e).__name__}: {e})"
        return SegmentCorrupted(msg, region=self.region)

    # ------------------------------------------------------------------ header values
    @property
    def size(self) -> int:
        """m_size: the managed size in bytes."""
        return self._Q[_SIZE_W]

    @property
    def allocated(self) -> int:
        """m_allocated: bytes of all allocated blocks, block headers included."""
        return self._Q[_ALLOCATED_W]

    def free_memory(self) -> int:
        """get_free_memory() = m_size - m_allocated - 128 (4.5)."""
        Q = self._Q
        return Q[_SIZE_W] - Q[_ALLOCATED_W] - FIRST_BLOCK

    @staticmethod
    def _sentinel_w(size: int) -> int:
        return _FIRST_W + ((size - FIRST_BLOCK) // UNIT - SENTINEL_UNITS) * _UNIT_W

    # ------------------------------------------------------------------ free-tree searches
    # These are the key-dependent parts of multiset<block_ctrl> (key = block size in units,
    # the word just before the hook), inlined over the word view because they run on every
    # allocation.  Pointer decoding: raw 1 = null, target = field + raw.
    def _best_fit(self, units: int) -> int:
        """lower_bound(units): the in-order first free node with size >= units, or 0."""
        q = self._q
        lim = self._lim
        y = 0
        r = q[_FREE_TREE_W] & NOT_COLOUR
        x = 0 if r == NULL_RAW else _FREE_TREE_W + (r >> 3)
        for _ in DEPTH_RANGE:
            if not x:
                return y
            if not 0 < x <= lim:
                self._corrupt("free tree pointer leads outside the segment", x * 8)
            if q[x - 1] & SIZE_MASK < units:
                r = q[x + 2]
                x = 0 if r == NULL_RAW else x + 2 + (r >> 3)
            else:
                y = x
                r = q[x + 1]
                x = 0 if r == NULL_RAW else x + 1 + (r >> 3)
        self._free.too_deep(x)

    def _insert_upper(self, z: int, key: int) -> None:
        """insert_equal without hint: upper-bound descent, new node after its equals (5)."""
        q = self._q
        lim = self._lim
        y = _FREE_TREE_W
        r = q[y] & NOT_COLOUR
        x = 0 if r == NULL_RAW else y + (r >> 3)
        go_left = True
        for _ in DEPTH_RANGE:
            if not x:
                break
            if not 0 < x <= lim:
                self._corrupt("free tree pointer leads outside the segment", x * 8)
            y = x
            go_left = key < q[x - 1] & SIZE_MASK
            if go_left:
                r = q[x + 1]
                x = 0 if r == NULL_RAW else x + 1 + (r >> 3)
            else:
                r = q[x + 2]
                x = 0 if r == NULL_RAW else x + 2 + (r >> 3)
        else:
            self._free.too_deep(x)
        self._free.link(y, z, go_left)

    def _insert_lower(self, z: int, key: int) -> None:
        """Lower-bound descent (hinted insert whose hint is too small): before its equals."""
        q = self._q
        lim = self._lim
        y = _FREE_TREE_W
        r = q[y] & NOT_COLOUR
        x = 0 if r == NULL_RAW else y + (r >> 3)
        go_left = True
        for _ in DEPTH_RANGE:
            if not x:
                break
            if not 0 < x <= lim:
                self._corrupt("free tree pointer leads outside the segment", x * 8)
            y = x
            go_left = not q[x - 1] & SIZE_MASK < key
            if go_left:
                r = q[x + 1]
                x = 0 if r == NULL_RAW else x + 1 + (r >> 3)
            else:
                r = q[x + 2]
                x = 0 if r == NULL_RAW else x + 2 + (r >> 3)
        else:
            self._free.too_deep(x)
        self._free.link(y, z, go_left)

    def _insert_hinted(self, z: int, key: int, hint: int) -> None:
        """insert_equal(hint, z) (5): used only to re-insert a split remainder, the hint being
        the in-order successor of the block just erased."""
        q = self._q
        tree = self._free
        h = _FREE_TREE_W
        if hint == h or not q[hint - 1] & SIZE_MASK < key:
            prev = hint
            good = hint == tree.left(h)
            if not good:
                prev = tree.prev_node(hint)
                good = not key < q[prev - 1] & SIZE_MASK
            if good:
                if q[h] & NOT_COLOUR == NULL_RAW or tree.left(hint) == 0:
                    tree.link(hint, z, True)
                else:
                    tree.link(prev, z, False)
                return
            self._insert_upper(z, key)
        else:
            self._insert_lower(z, key)

    # ------------------------------------------------------------------ allocation
    def allocate(self, nbytes: int) -> int:
        """priv_allocate (7.2): return the user offset of a block with >= nbytes usable bytes.

        Raises OutOfMemory when no free block is big enough (the caller grows and retries).
        """
        if nbytes < 0:
            raise ValueError(f"cannot allocate a negative size ({nbytes})")
        if self._ro:
            self._readonly()
        try:
            return self._allocate(nbytes)
        except _HANDLED as e:
            raise self._wrapped(e) from None

    def _allocate(self, nbytes: int) -> int:
        n = nbytes if nbytes > USABLE_BY_NEXT else USABLE_BY_NEXT
        units = ((n - USABLE_BY_NEXT + UNIT - 1) >> 4) + 1
        if units < MIN_BLOCK_UNITS:
            units = MIN_BLOCK_UNITS
        node = self._best_fit(units)
        if not node:
            raise OutOfMemory(f"no free block of {units} units ({nbytes} bytes requested; "
                              f"{self.free_memory()} bytes free in total)", region=self.region)
        # check_and_allocate: split off the high remainder when it can be a block of its own.
        Q = self._Q
        b = node - _HOOK_W
        w = Q[b + 1]
        size = w & SIZE_MASK
        tree = self._free
        if size >= units + MIN_BLOCK_UNITS:
            rest = size - units
            Q[b + 1] = (w & FLAG_MASK) | units
            r = b + units * _UNIT_W
            Q[r + 1] = rest                      # fresh block_ctrl: free, prev free, rest units
            nx = r + rest * _UNIT_W              # mark_free(r)
            Q[nx + 1] &= CLEAR_PREV_ALLOCATED
            Q[nx] = rest
            if Q[_FREE_COUNT_W] == 1:
                tree.replace_sole(node, r + _HOOK_W)    # the common case, same words
            else:
                hint = tree.next_node(node)
                tree.erase(node)
                self._insert_hinted(r + _HOOK_W, rest, hint)
            size = units
        else:
            tree.erase(node)
        Q[_ALLOCATED_W] += size * UNIT
        Q[b + 1] |= ALLOCATED                    # mark_alloc(b)
        nx = b + size * _UNIT_W
        Q[nx + 1] |= PREV_ALLOCATED
        # Zero the stale hook (user bytes 0-31) and the next block's prev_size (last 8 bytes).
        Q[node] = 0
        Q[node + 1] = 0
        Q[node + 2] = 0
        Q[node + 3] = 0
        Q[nx] = 0
        return node << 3

    def allocate_run(self, sizes) -> Optional[List[int]]:
        """``[allocate(n) for n in sizes]`` in one pass, when every block comes out of the
        region's only free block and each one splits it (the stub's steady state); None, with
        nothing written, when the segment is not in that state (allocate one by one then).

        Each of those allocations would take the same node (the only one), split it and
        re-seat the remainder with replace_sole; the next one then zeroes the words the previous
        step wrote into its remainder (its prev_size and its tree hook) and rewrites its size
        word. So the final words are: each block's size word and zeroed hook, the last
        remainder's header, the end block's prev_size, one replace_sole and ``m_allocated``,
        which is all that is written here (a differential test checks it against the
        one-by-one path and the Boost model, byte for byte).
        """
        if self._ro:
            self._readonly()
        try:
            return self._allocate_run(sizes)
        except _HANDLED as e:
            raise self._wrapped(e) from None

    def _allocate_run(self, sizes) -> Optional[List[int]]:
        Q = self._Q
        if Q[_FREE_COUNT_W] != 1:
            return None
        node = self._free.root()
        if not node:
            return None
        units = []
        for nbytes in sizes:
            if nbytes < 0:
                raise ValueError(f"cannot allocate a negative size ({nbytes})")
            units.append(units_for(nbytes))
        total = sum(units)
        b = node - _HOOK_W
        w = Q[b + 1]
        size = w & SIZE_MASK
        end = b + size * _UNIT_W
        if w & ALLOCATED or size < total + MIN_BLOCK_UNITS or end + 2 > self._nw:
            return None
        flags = w & FLAG_MASK
        offsets = []
        for u in units:
            Q[b + 1] = flags | u | ALLOCATED
            Q[b + 2] = 0                         # the stale hook, user bytes 0-31
            Q[b + 3] = 0
            Q[b + 4] = 0
            Q[b + 5] = 0
            offsets.append((b + _HOOK_W) << 3)
            b += u * _UNIT_W
            Q[b] = 0                             # the next block's prev_size
            flags = PREV_ALLOCATED
        rest = size - total
        Q[b + 1] = rest | PREV_ALLOCATED         # the remainder: free, after an allocated block
        Q[end + 1] &= CLEAR_PREV_ALLOCATED
        Q[end] = rest
        self._free.replace_sole(node, b + _HOOK_W)
        Q[_ALLOCATED_W] += total * UNIT
        return offsets

    def allocate_aligned(self, nbytes: int, alignment: int) -> int:
        """priv_allocate_aligned (7.4): a user offset that is a multiple of ``alignment``.

        The unaligned path zeroes nothing; see the module notes in the spec (11, zeroing)."""
        if nbytes < 0:
            raise ValueError(f"cannot allocate a negative size ({nbytes})")
        if alignment <= 0 or alignment & (alignment - 1):
            raise ValueError(f"alignment must be a power of two, got {alignment}")
        if self._ro:
            self._readonly()
        try:
            if alignment <= UNIT:
                return self._allocate(nbytes)
            return self._allocate_aligned(nbytes, alignment)
        except _HANDLED as e:
            raise self._wrapped(e) from None

    def _allocate_aligned(self, nbytes: int, alignment: int) -> int:
        if nbytes > USABLE_BY_NEXT:
            nbytes -= USABLE_BY_NEXT
        min_alloc = nbytes + alignment
        if min_alloc < MIN_BLOCK_UNITS * UNIT:
            min_alloc = MIN_BLOCK_UNITS * UNIT
        user = self._allocate(min_alloc + ALIGNED_EXTRA)
        need = ((nbytes + UNIT - 1) >> 4) + 1
        if need < MIN_BLOCK_UNITS:
            need = MIN_BLOCK_UNITS
        Q = self._Q
        b = (user >> 3) - _HOOK_W
        w = Q[b + 1]
        old = w & SIZE_MASK
        if user % alignment == 0:
            # Lucky: keep the low part, give back a tail big enough to be a block.
            if old >= need + MIN_BLOCK_UNITS:
                s = b + need * _UNIT_W
                Q[b + 1] = (w & FLAG_MASK) | need
                Q[s + 1] = (Q[s + 1] & FLAG_MASK) | (old - need)
                Q[b + 1] |= ALLOCATED                           # mark_alloc(b)
                Q[s + 1] |= PREV_ALLOCATED | ALLOCATED          # ... and mark_alloc(s)
                Q[s + (old - need) * _UNIT_W + 1] |= PREV_ALLOCATED
                self._deallocate_block(s)
            return user
        # Cut at the first aligned user address at least one minimum block further on.
        pos = (user + MIN_BLOCK_UNITS * UNIT + alignment - 1) & -alignment
        s = (pos >> 3) - _HOOK_W
        lead = (s - b) // _UNIT_W
        Q[b + 1] = (w & FLAG_MASK) | lead | ALLOCATED           # b.size = lead; mark_alloc(b)
        Q[s + 1] |= PREV_ALLOCATED
        rest = old - lead
        if rest >= need + MIN_BLOCK_UNITS:
            t = s + need * _UNIT_W
            tail = rest - need
            Q[s + 1] = (Q[s + 1] & FLAG_MASK) | need | ALLOCATED   # s.size = need; mark_alloc(s)
            Q[t + 1] = tail | PREV_ALLOCATED | ALLOCATED           # fresh t; mark_alloc(t)
            Q[t + tail * _UNIT_W + 1] |= PREV_ALLOCATED
            self._deallocate_block(t)
        else:
            Q[s + 1] = (Q[s + 1] & FLAG_MASK) | rest | ALLOCATED   # s takes the rest
            Q[s + rest * _UNIT_W + 1] |= PREV_ALLOCATED
        self._deallocate_block(b)
        return pos

    # ------------------------------------------------------------------ deallocation
    def deallocate(self, offset: int) -> None:
        """priv_deallocate (7.3): free the block whose user offset is ``offset``; coalesces.

        The handle is validated first: it must lie inside the segment and name an allocated
        block whose neighbours agree (BadHandle otherwise, e.g. on a double free)."""
        if self._ro:
            self._readonly()
        self.free_block(self.block_of(offset))

    def _checked_block(self, offset: int) -> int:
        """Word index of the allocated block whose user area starts at ``offset``."""
        Q = self._Q
        if not isinstance(offset, int):
            raise TypeError(f"a segment offset must be an int, got {type(offset).__name__}")
        e = self._sentinel_w(Q[_SIZE_W])
        if e + 2 > self._nw:
            raise self._wrapped(IndexError("sentinel beyond the buffer"))
        if offset % UNIT or not _MIN_USER <= offset < e * 8:
            self._bad_handle(f"offset {offset} is not a block's user offset inside the segment "
                             f"(16-aligned, {_MIN_USER} <= offset < {e * 8})", offset)
        b = (offset >> 3) - _HOOK_W
        w = Q[b + 1]
        size = w & SIZE_MASK
        if not w & ALLOCATED:
            self._bad_handle("block is not allocated (double free, or not a handle)", offset)
        nx = b + size * _UNIT_W
        if size < MIN_BLOCK_UNITS or nx > e:
            self._bad_handle(f"no valid block header before this offset (size word {w:#x})",
                             offset)
        if not Q[nx + 1] & PREV_ALLOCATED:
            self._bad_handle("the next block says this one is free (double free?)", offset)
        if not w & PREV_ALLOCATED:
            ps = Q[b]
            pb = b - ps * _UNIT_W
            if ps < MIN_BLOCK_UNITS or pb < _FIRST_W or Q[pb + 1] & ALLOCATED or \
                    Q[pb + 1] & SIZE_MASK != ps:
                self._bad_handle("block's prev_size does not lead to a free block of that size "
                                 "(double free after a merge, or not a handle)", offset)
        nxw = Q[nx + 1]
        if not nxw & ALLOCATED:
            ns = nxw & SIZE_MASK
            if ns < MIN_BLOCK_UNITS or nx + ns * _UNIT_W > e:
                self._corrupt(f"free block after this one has a bad size word {nxw:#x}",
                              nx * 8 + BLOCK_BITS)
        return b

    def _deallocate_block(self, b: int) -> None:
        Q = self._Q
        tree = self._free
        w = Q[b + 1]
        size = w & SIZE_MASK
        Q[_ALLOCATED_W] -= size * UNIT
        nx = b + size * _UNIT_W
        nxw = Q[nx + 1]
        target = b
        prev_free = not w & PREV_ALLOCATED
        next_free = not nxw & ALLOCATED
        # The free block it merges with is the tree's only node (a region whose free space is
        # one block, freed last-allocated first: release_many's order): erase + insert of the
        # only node is replace_sole, the same words in one step (see CompactRBTree).
        sole = prev_free != next_free and Q[_FREE_COUNT_W] == 1
        if prev_free:
            pb = b - Q[b] * _UNIT_W
            if pb < _FIRST_W:
                self._corrupt("prev_size points before the first block", b * 8)
            Q[pb + 1] += size                      # pb.size += b.size (no carry: size < 2^62)
            if not sole:
                tree.erase(pb + _HOOK_W)
            target = pb
        if next_free:
            Q[target + 1] += nxw & SIZE_MASK
            if not sole:
                tree.erase(nx + _HOOK_W)
        tw = Q[target + 1] & CLEAR_ALLOCATED       # mark_free(target)
        Q[target + 1] = tw
        tsize = tw & SIZE_MASK
        tn = target + tsize * _UNIT_W
        Q[tn + 1] &= CLEAR_PREV_ALLOCATED
        Q[tn] = tsize
        if sole:
            tree.replace_sole(target + _HOOK_W if prev_free else nx + _HOOK_W, target + _HOOK_W)
        else:
            self._insert_upper(target + _HOOK_W, tsize)

    def free_run(self, offsets) -> bool:
        """``deallocate`` of every offset, when they are the user offsets of consecutive
        allocated blocks that end at a free block, in one of the two shapes a stub's run takes
        (False, with nothing written, otherwise: free them one by one then, which also reports
        a bad handle). Each offset is checked as :meth:`block_of` checks it first.

        * **Sole**: the free block after the run is the only free block. Freed last first,
          each block merges with the free block after it, the only tree node, so each step is
          a replace_sole; what a step writes into the end block's prev_size and the tree header
          is rewritten by the next, and the hook it gives its block stays (inside the merged
          free block by then). That is what is written here.
        * **Pair**: the run lies between the only two free blocks (the parent freed a request
          it had built just before our blocks). Freed *first* first, each block but the last
          merges into the free block before it, a red leaf or the root whose erase and
          re-insert with the larger size leave the tree as it was (checked: the size stays
          below the other block's); the last block joins both, which leaves the only free block
          (the words of erase, erase and an insert into the empty tree).

        The order is ours to choose: every step is Boost's own deallocation, and the region's
        bytes are those of the one-by-one frees in that order (tested against the Boost model).
        """
        if self._ro:
            self._readonly()
        try:
            return self._free_run(offsets)
        except _HANDLED as e:
            raise self._wrapped(e) from None

    def _free_run(self, offsets) -> bool:
        Q = self._Q
        count = Q[_FREE_COUNT_W]
        if not 1 <= count <= 2 or not offsets:
            return False
        e = self._sentinel_w(Q[_SIZE_W])
        if e + 2 > self._nw:
            return False
        first = offsets[0]
        if type(first) is not int or first % UNIT or not _MIN_USER <= first < e * 8:
            return False
        b = (first >> 3) - _HOOK_W
        after_free_block = not Q[b + 1] & PREV_ALLOCATED
        if after_free_block != (count == 2):
            return False
        blocks = []
        sizes = []
        for off in offsets:
            if type(off) is not int or off != (b + _HOOK_W) << 3:
                return False
            w = Q[b + 1]
            size = w & SIZE_MASK
            nb = b + size * _UNIT_W
            if not w & ALLOCATED or size < MIN_BLOCK_UNITS or nb > e or \
                    not Q[nb + 1] & PREV_ALLOCATED:
                return False
            blocks.append(b)
            sizes.append(size)
            b = nb
        fw = Q[b + 1]                            # the free block after the run
        free = fw & SIZE_MASK
        end = b + free * _UNIT_W
        if fw & ALLOCATED or free < MIN_BLOCK_UNITS or end > e:
            return False
        freed = sum(sizes)
        if count == 2:
            return self._free_run_pair(blocks, sizes, freed, b, free, end)
        if self._free.root() != b + _HOOK_W:
            return False
        for b, size in zip(reversed(blocks), reversed(sizes)):
            free += size
            Q[b + 1] = (Q[b + 1] & PREV_ALLOCATED) | free   # merged with what follows; mark_free
        Q[end + 1] &= CLEAR_PREV_ALLOCATED
        Q[end] = free
        Q[_ALLOCATED_W] -= freed * UNIT
        self._free.replace_sole_run([b + _HOOK_W for b in reversed(blocks)])
        return True

    def _free_run_pair(self, blocks, sizes, freed, t, free, end) -> bool:
        """The pair shape of :meth:`free_run` (``t``: the free block after the run)."""
        Q = self._Q
        b0 = blocks[0]
        ps = Q[b0]                               # the free block before: checked as block_of does
        pb = b0 - ps * _UNIT_W
        if ps < MIN_BLOCK_UNITS or pb < _FIRST_W:
            return False
        pw = Q[pb + 1]
        if pw & ALLOCATED or pw & SIZE_MASK != ps:
            return False
        if not self._free.is_pair(pb + _HOOK_W, t + _HOOK_W):
            return False
        if len(blocks) > 1 and not ps + freed - sizes[-1] < free:
            return False                         # re-inserted after the other: not this shape
        grown = ps
        for b, size in zip(blocks[1:], sizes):   # each block but the last joins the one before
            grown += size
            Q[b + 1] &= CLEAR_PREV_ALLOCATED     # the next block learns its free neighbour
            Q[b] = grown
        total = grown + sizes[-1] + free
        Q[pb + 1] = (pw & PREV_ALLOCATED) | total
        Q[end + 1] &= CLEAR_PREV_ALLOCATED
        Q[end] = total
        Q[_ALLOCATED_W] -= freed * UNIT
        self._free.merge_pair(pb + _HOOK_W, t + _HOOK_W)
        return True

    def block_of(self, offset: int) -> int:
        """Validate ``offset`` as deallocate does; the token it returns is for
        :meth:`free_block` (one validation when a caller checks before it frees)."""
        try:
            return self._checked_block(offset)
        except _HANDLED as e:
            raise self._wrapped(e) from None

    def free_block(self, token: int) -> None:
        """deallocate() of a block already validated by :meth:`block_of` (lock still held)."""
        if self._ro:
            self._readonly()
        try:
            self._deallocate_block(token)
        except _HANDLED as e:
            raise self._wrapped(e) from None

    def usable_size(self, offset: int) -> int:
        """size(ptr): user bytes of the allocated block at ``offset`` (validated like free)."""
        return usable_bytes(self._Q[self.block_of(offset) + 1] & SIZE_MASK)

    # ------------------------------------------------------------------ growth
    def grow(self, extra: int) -> None:
        """managed_external_buffer::grow (7.5), after the buffer was enlarged and rebound.

        Refuses the case Boost corrupts (3 <= new tail < 48 bytes) instead of imitating it."""
        if not isinstance(extra, int) or extra < 0:
            raise ValueError(f"grow needs a non-negative int, got {extra!r}")
        if self._ro:
            self._readonly()
        try:
            self._grow(extra)
        except _HANDLED as e:
            raise self._wrapped(e) from None

    def _grow(self, extra: int) -> None:
        Q = self._Q
        size = Q[_SIZE_W]
        old_e = self._sentinel_w(size)
        new_size = size + extra
        tail = new_size - (old_e * 8 + SENTINEL_UNITS * UNIT)
        if new_size > len(self._m):
            raise ShmError(f"cannot grow the segment to {new_size} bytes: only {len(self._m)} "
                           "are mapped (enlarge the file, remap and rebind first)",
                           region=self.region, offset=HDR_SIZE)
        if MIN_BLOCK_UNITS <= tail < MIN_BLOCK_UNITS * UNIT:
            raise ShmError(f"refusing to grow by {extra} bytes: it leaves {tail} bytes after the "
                           f"end sentinel, which Boost 1.79 would turn into a block smaller than "
                           f"{MIN_BLOCK_UNITS} units and corrupt the heap; grow by at least "
                           f"{MIN_BLOCK_UNITS * UNIT - tail + extra} bytes",
                           region=self.region, offset=old_e * 8)
        Q[_SIZE_W] = new_size
        if tail < MIN_BLOCK_UNITS:
            # Boost compares the byte tail with the unit count 3: the bytes become slack.
            return
        new_e = old_e + (tail // UNIT) * _UNIT_W
        dist = (new_e - _FIRST_W) // _UNIT_W
        Q[new_e + 1] = (Q[new_e + 1] & PREV_ALLOCATED) | ALLOCATED | dist
        Q[_FIRST_W] = dist
        Q[_FIRST_W + 1] |= PREV_ALLOCATED
        # The old sentinel becomes an allocated block spanning the new space, then is freed.
        units = (new_e - old_e) // _UNIT_W
        Q[old_e + 1] = (Q[old_e + 1] & FLAG_MASK) | units | ALLOCATED
        Q[new_e + 1] |= PREV_ALLOCATED
        Q[_ALLOCATED_W] += units * UNIT
        self._deallocate_block(old_e)

    # ------------------------------------------------------------------ walking and checking
    def blocks(self) -> Iterator[Block]:
        """Walk the blocks from 128 to the sentinel (excluded), checking only what keeps the
        walk inside the segment."""
        Q = self._Q
        e = self._sentinel_w(Q[_SIZE_W])
        if e + 2 > self._nw:
            raise self._wrapped(IndexError("sentinel beyond the buffer"))
        b = _FIRST_W
        while b < e:
            w = Q[b + 1]
            size = w & SIZE_MASK
            nb = b + size * _UNIT_W
            if size < MIN_BLOCK_UNITS or nb > e:
                self._corrupt(f"block size word {w:#x} is impossible", b * 8 + BLOCK_BITS)
            yield Block(b * 8, size, bool(w & ALLOCATED))
            b = nb

    def check(self) -> SegmentReport:
        """Full consistency walk (4.6 and Appendix A): header, every block and its bits, the
        sentinel, the free tree (structure, colours, black height, order, leftmost/rightmost,
        count, and that it holds exactly the free blocks), m_allocated, free memory and the
        named index.  Raises SegmentCorrupted at the first offset found bad."""
        try:
            return self._check()
        except _HANDLED as e:
            raise self._wrapped(e) from None

    def _check(self) -> SegmentReport:
        try:
            self._validate_header()
        except NotASegment as e:
            raise SegmentCorrupted(e.bare_message, region=self.region, offset=e.offset) from None
        bad = self._corrupt
        Q = self._Q
        size = Q[_SIZE_W]
        e = self._sentinel_w(size)
        # ---- block walk
        b = _FIRST_W
        prev_alloc = True          # the first block's prev_allocated is always 1
        alloc_units = free_units = n_alloc = 0
        largest = 0
        free_nodes = []
        alloc_users = set()
        while b < e:
            w = Q[b + 1]
            units = w & SIZE_MASK
            nb = b + units * _UNIT_W
            if units < MIN_BLOCK_UNITS or nb > e:
                bad(f"block size word {w:#x} is impossible", b * 8 + BLOCK_BITS)
            if bool(w & PREV_ALLOCATED) != prev_alloc:
                bad("prev_allocated bit disagrees with the previous block", b * 8 + BLOCK_BITS)
            if w & ALLOCATED:
                alloc_units += units
                n_alloc += 1
                alloc_users.add(b + _HOOK_W)
                prev_alloc = True
            else:
                if not prev_alloc:
                    bad("two adjacent free blocks (missed coalescing)", b * 8)
                free_units += units
                if units > largest:
                    largest = units
                free_nodes.append(b + _HOOK_W)
                prev_alloc = False
            if not prev_alloc and Q[nb] != units:
                bad(f"prev_size {Q[nb]} after a free block of {units} units", nb * 8)
            b = nb
        if b != e:
            bad("block walk does not land on the end sentinel", b * 8)
        w = Q[e + 1]
        dist = (e - _FIRST_W) // _UNIT_W
        if not w & ALLOCATED or w & SIZE_MASK != dist:
            bad(f"end sentinel word {w:#x} is not allocated / {dist} units", e * 8 + BLOCK_BITS)
        if bool(w & PREV_ALLOCATED) != prev_alloc:
            bad("sentinel's prev_allocated bit disagrees with the last block", e * 8 + BLOCK_BITS)
        # ---- accounting
        if Q[_ALLOCATED_W] != alloc_units * UNIT:
            bad(f"m_allocated is {Q[_ALLOCATED_W]} but allocated blocks hold "
                f"{alloc_units * UNIT} bytes", HDR_ALLOCATED)
        slack = size - (e * 8 + SENTINEL_UNITS * UNIT)
        free_memory = self.free_memory()
        if free_memory != free_units * UNIT + SENTINEL_UNITS * UNIT + slack:
            bad("free memory does not equal free blocks + sentinel + slack", HDR_ALLOCATED)
        # ---- free tree
        q = self._q
        order, black_height = self._free.validate(lambda n: q[n - 1] & SIZE_MASK)
        if len(order) != len(free_nodes) or set(order) != set(free_nodes):
            stray = sorted(set(order) ^ set(free_nodes))
            bad("the free tree does not hold exactly the free blocks",
                (stray[0] - _HOOK_W) * 8 if stray else HDR_FREE_COUNT)
        # ---- named index
        named = []
        nodes, _ = self._named.validate(self._name_key, strict=True)
        for n in nodes:
            if n not in alloc_users:
                bad("named object is not the start of an allocated block", n * 8)
            name, value, vbytes, end = self._named_entry(n)
            units = Q[n - _HOOK_W + 1] & SIZE_MASK
            if end >= n * 8 + usable_bytes(units) or self._m[end] != 0:
                bad(f"named object {name!r} does not fit its block or lacks its NUL", n * 8)
            named.append((name, value, vbytes))
        self._unique.validate()
        return SegmentReport(
            size=size, allocated=Q[_ALLOCATED_W], free_memory=free_memory, sentinel=e * 8,
            slack=slack, blocks=n_alloc + len(free_nodes), allocated_blocks=n_alloc,
            free_blocks=len(free_nodes), free_bytes=free_units * UNIT,
            largest_free=largest * UNIT, free_tree_black_height=black_height,
            named=tuple(named))

    # ------------------------------------------------------------------ named objects
    def _name_key(self, n: int) -> Tuple[int, bytes]:
        """(name length, name bytes) of the named node n: the iset_index ordering."""
        name, _value, _vbytes, end = self._named_raw(n)
        return len(name), name

    def _named_raw(self, n: int) -> Tuple[bytes, int, int, int]:
        """(name bytes, value offset, value bytes, offset of the NUL) of node n, bounds-checked."""
        m = self._m
        u = n * 8
        hdr = u + NAMED_BLOCK_HEADER
        if hdr + NAMED_HEADER_BYTES > len(m):
            self._corrupt("named object header beyond the buffer", u)
        vbytes = self._Q[hdr >> 3]
        nchar = m[u + NAMED_NUM_CHAR] | m[u + NAMED_NUM_CHAR + 1] << 8
        align = m[u + NAMED_VALUE_ALIGN]
        if m[u + NAMED_TYPE] != NAMED_TYPE_BYTE or not align or align & (align - 1):
            self._corrupt("named object header has a bad type byte or alignment",
                          u + NAMED_BLOCK_HEADER)
        value = hdr + (-(-NAMED_HEADER_BYTES // align)) * align
        end = value + vbytes + nchar
        if end >= len(m):
            self._corrupt("named object's name runs beyond the buffer", u)
        return bytes(m[value + vbytes:end]), value, vbytes, end

    def _named_entry(self, n: int) -> Tuple[str, int, int, int]:
        raw, value, vbytes, end = self._named_raw(n)
        return raw.decode("utf-8", "backslashreplace"), value, vbytes, end

    def find(self, name: NameLike) -> Optional[Tuple[int, int]]:
        """segment_manager::find: (value offset, value bytes) of a named object, or None."""
        nb = _name_bytes(name)
        try:
            node = self._find_node((len(nb), nb))
            if not node:
                return None
            _raw, value, vbytes, _end = self._named_raw(node)
            return value, vbytes
        except _HANDLED as e:
            raise self._wrapped(e) from None

    def _find_node(self, key: Tuple[int, bytes]) -> int:
        tree = self._named
        h = tree.h
        y = h
        x = tree.root()
        steps = 0
        while x:
            steps += 1
            if steps > MAX_DEPTH:      # a red-black tree in 2^64 bytes is never this deep
                self._corrupt("named index deeper than possible (cycle?)", x * 8)
            if self._name_key(x) < key:
                x = tree.right(x)
            else:
                y = x
                x = tree.left(x)
        if y == h or key < self._name_key(y):
            return 0
        return y

    def named_objects(self) -> List[Tuple[str, int, int]]:
        """(name, value offset, value bytes) of every named object, in index order."""
        try:
            nodes, _ = self._named.validate()
            return [self._named_entry(n)[:3] for n in nodes]
        except _HANDLED as e:
            raise self._wrapped(e) from None

    def construct_named(self, name: NameLike, value_bytes: int, align: int = 8) -> int:
        """find_or_construct (8.3): the value offset of ``name``, constructing the object
        (value zero-initialised) if it does not exist yet.  An existing object is returned
        as it is, whatever its size -- as Boost does."""
        nb = _name_bytes(name)
        if value_bytes < 0:
            raise ValueError(f"value_bytes must be >= 0, got {value_bytes}")
        if align not in (1, 2, 4, 8):
            # Only alignof(T) <= 8 lays the value out as 8.1 describes (verified for 8).
            raise ValueError(f"named-object alignment must be 1, 2, 4 or 8, got {align}")
        if self._ro:
            self._readonly()
        try:
            return self._construct_named(nb, value_bytes, align)
        except _HANDLED as e:
            raise self._wrapped(e) from None

    def _construct_named(self, nb: bytes, value_bytes: int, align: int) -> int:
        key = (len(nb), nb)
        tree = self._named
        # insert_unique_check (6.6): remember the last node not greater than key.
        y = tree.h
        x = tree.root()
        prev = 0
        go_left = True
        steps = 0
        while x:
            steps += 1
            if steps > MAX_DEPTH:
                self._corrupt("named index deeper than possible (cycle?)", x * 8)
            y = x
            go_left = key < self._name_key(x)
            if go_left:
                x = tree.left(x)
            else:
                prev = x
                x = tree.right(x)
        if prev and not self._name_key(prev) < key:
            return self._named_raw(prev)[1]
        value_off = -(-NAMED_HEADER_BYTES // align) * align
        user = self._allocate(NAMED_BLOCK_HEADER + value_off + value_bytes + len(nb) + 1)
        m = self._m
        n = user >> 3
        q = self._q
        q[n] = NULL_RAW            # safe-link hook image (null, null, null); link rewrites it
        q[n + 1] = NULL_RAW
        q[n + 2] = NULL_RAW
        hdr = user + NAMED_BLOCK_HEADER
        self._Q[hdr >> 3] = value_bytes
        m[hdr + 8:hdr + 16] = bytes((len(nb) & 0xFF, len(nb) >> 8, align, NAMED_TYPE_BYTE,
                                     0, 0, 0, 0))
        value = hdr + value_off
        m[value:value + value_bytes] = bytes(value_bytes)
        m[value + value_bytes:value + value_bytes + len(nb) + 1] = nb + b"\0"
        tree.link(y, n, go_left)
        return value


__all__ = [
    "ManagedSegment", "SegmentReport", "Block", "units_for", "usable_bytes",
    "FIRST_BLOCK", "UNIT", "MIN_BLOCK_UNITS", "MIN_SEGMENT", "EXTRA_HDR_BYTES",
]

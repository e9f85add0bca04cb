"""The python-backend conformance suite: one set of cases, any server, any stub, one verdict.

A *case* is data: a model directory under ``conformance/models`` plus an entry in a case file
(``conformance/cases/<group>.json``) that says what request to send and what to compare. A
*cell* of the matrix is one (server, stub) pair: the server is tritonserver (launched from the
reference install or a path) or tritonstub's harness (``tritonstub serve``), the stub is ours,
the C++ one or any executable. The *reference cell* is (tritonserver, C++ stub).

Each case is run in each cell; its normalised outcome (:mod:`.normalise`) must equal the
reference cell's outcome when the reference ran, and the expectation recorded from the
reference in the case file otherwise (so a user without the C++ stub still gets a verdict). A
deliberate difference (docs/stub.md) is written in the case with its reason and the outcome the
differing cell gives; matching it is reported as *expected*, not as a pass.

Modules: :mod:`.cases` (the case format), :mod:`.actions` (what a case does to a server),
:mod:`.columns` (servers and stubs), :mod:`.runner` (the matrix and the verdicts),
:mod:`.report` (Markdown, JSON, JUnit XML), :mod:`.normalise`.
"""

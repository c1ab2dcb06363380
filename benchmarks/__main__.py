"""``python -m benchmarks``: every benchmark with its peer, one summary (see ``_runner``)."""

from benchmarks._runner import main

raise SystemExit(main())

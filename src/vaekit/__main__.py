"""``python -m vaekit`` runs the command line (also what ``torchrun -m vaekit`` starts)."""

from vaekit.entry import main

raise SystemExit(main())

"""python -m miltrd"""

from .cli import main

raise SystemExit(main())

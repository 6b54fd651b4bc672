"""``python -m skinclf.ensemble``: see :mod:`skinclf.commands.ensemble`."""

from skinclf.commands.ensemble import main

if __name__ == "__main__":
    main()

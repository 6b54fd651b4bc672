"""``python -m skinclf.report``: see :mod:`skinclf.commands.report`."""

from skinclf.commands.report import main

if __name__ == "__main__":
    main()

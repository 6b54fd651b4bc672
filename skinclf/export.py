"""``python -m skinclf.export``: see :mod:`skinclf.commands.export`."""

from skinclf.commands.export import main

if __name__ == "__main__":
    main()

"""``python -m skinclf.evaluate``: see :mod:`skinclf.commands.evaluate`."""

from skinclf.commands.evaluate import main

if __name__ == "__main__":
    main()

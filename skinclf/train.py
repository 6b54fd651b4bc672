"""``python -m skinclf.train``: see :mod:`skinclf.commands.train`."""

from skinclf.commands.train import main

if __name__ == "__main__":
    main()

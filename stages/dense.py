"""DVC stage entry point; the command lives in prunelab.commands.dense (also `prunelab dense`)."""

from prunelab.commands.dense import app

if __name__ == "__main__":
    app()

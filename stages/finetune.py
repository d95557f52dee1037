"""DVC stage entry point; the command lives in prunelab.commands.finetune (also `prunelab finetune`)."""

from prunelab.commands.finetune import app

if __name__ == "__main__":
    app()

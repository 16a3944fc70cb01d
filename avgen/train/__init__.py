"""Training code for avgen's small default models (research side; `avgen train ...`)."""

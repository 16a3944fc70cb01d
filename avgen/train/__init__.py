"""Research side: teacher corpus and training loops (`avgen train ...`)."""

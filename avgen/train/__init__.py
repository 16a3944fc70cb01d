"""Research side: teacher corpus, training loops."""

"""Evaluation metrics (DESIGN.md section 10): WER via Whisper tiny.en, MCD, ..."""

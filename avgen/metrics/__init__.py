"""Evaluation metrics (docs/design.md, "Evaluation") and the `avgen eval` report.

motion.py: lip-closure F1, FDe, Div_h / Div_e, BC_h / BC_e and the listener checks;
asr.py: WER of Whisper tiny.en transcripts; audio.py: MCD (13 MFCC, DTW);
evaluate.py: runs the metrics over generated `.av.npz` files against a reference.
"""

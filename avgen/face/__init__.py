"""The face side (docs/design.md, "Face renderer and tracker"): landmarks, the face model
over them, the renderer (photo + motion -> frames) and the tracker (video -> motion)."""

"""The face side (DESIGN.md section 8): landmarks, the face model over them, the renderer
(photo + motion -> frames) and the tracker (video -> motion)."""

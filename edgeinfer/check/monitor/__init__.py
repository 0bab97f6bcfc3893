"""``edgeinfer monitor``: the field monitor over a folder, a video, a camera or a CSV of the
device's probabilities, with a JSON, Markdown and PNG report (issue 27)."""

"""Accuracy evaluation: the twin's fault scenarios and the public labelled datasets."""

"""The gateway in front of the real ubscore, matcher and settlement, all in one process."""

"""Both services together: ubscore and the matcher on one log."""

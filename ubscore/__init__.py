"""ordermesh ubscore service."""

"""What every bench shares: the speech corpora, the server process, the virtual clock,
and the writing of reports. Each bench module keeps only its own measurement."""

"""The local lab fleet: Debian 12 systemd containers that stand in for servers."""

"""Task logs (LogStorage): the shared logs volume or remote logging. config.py -> component.py."""

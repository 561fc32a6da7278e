"""A module that uses a database and a cache, both from secrets."""

"""Automatic certificates from an ACME certificate authority (Let's Encrypt or any ACME v2
directory) for bases published on the internet: settings, storage, renewal schedule, ordering.

Pure core: no mitmproxy here. ``addons/autocert.py`` runs the renewals and answers the
challenges; ``gateway cert acme`` reports and renews from the command line.
"""

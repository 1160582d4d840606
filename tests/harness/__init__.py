# smtptlsd test harness: real PostgreSQL, real Postfix, test certificates, the daemon process and its
# NOTIFY_SOCKET, each in a private directory on loopback. Debian's /usr/bin/python3, standard library only.

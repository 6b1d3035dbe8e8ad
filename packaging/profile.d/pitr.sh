# /etc/profile.d/pitr.sh: puts pitr's programs (/opt/pitr/bin) on PATH and its manual pages
# (/opt/pitr/share/man) on MANPATH for login shells, so that `pitr-backup --help` and
# `man pitr-backup` work after `sudo -iu postgres`. Installed by the pitr RPM.
# postgresql.conf commands and cron jobs read no profile: they name /opt/pitr/bin in full.

case ":${PATH}:" in
    *:/opt/pitr/bin:*) ;;
    *) PATH="${PATH:+${PATH}:}/opt/pitr/bin" ;;
esac
export PATH

# An empty field in MANPATH stands for man's default search path, so an unset MANPATH becomes
# ":/opt/pitr/share/man": the system's pages first, then pitr's.
case ":${MANPATH-}:" in
    *:/opt/pitr/share/man:*) ;;
    *) MANPATH="${MANPATH-}:/opt/pitr/share/man" ;;
esac
export MANPATH

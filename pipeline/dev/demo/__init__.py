"""``pectrack demo``: broker, IMAP server with simulated PEC traffic, agent and workers.

``feed`` (endless simulated traffic, pure), ``imapserver`` (pymap, in memory),
``provider`` (the child process serving IMAP and storing the traffic), ``orchestrate``
(child processes and their cleanup), ``view`` (metrics to a table, pure), ``stack``
(wiring and the watch loop), ``cli`` (the subcommand). See docs/demo.md.
"""

"""The debugger's terminal UI (Textual): machines, schema, log, timelines, matrix and rain.

Modules, one job each: :mod:`.session` (cursor, filters, jumps: the state behind every key),
:mod:`.history` (what each transition did), :mod:`.address` (``mach://`` URLs and history),
:mod:`.filters`, :mod:`.groups` (schema groups), :mod:`.pipes` (pipes from log lines), the
panes (:mod:`.machine_list`, :mod:`.schema_tree`, :mod:`.log_pane`,
:mod:`.timelines`, :mod:`.matrix`, :mod:`.bars`), :mod:`.dialogs`, :mod:`.help`,
:mod:`.diagram`, :mod:`.outputs` (tx.md, clients.txt, log.md), :mod:`.theme` (dark/light),
:mod:`.live` (the trio collector inside Textual) and :mod:`.app`.
"""

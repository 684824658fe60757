"""The `hollang` command line: serving, the database, catalogues, models, images, exports.

Every command lives here, not in the packages it drives: `server` serves HTTP, `model`,
`db` and `storage` do the work, and a command is the thin layer that reads settings, opens
what it needs (`cli.context`) and reports in one line or one JSON document.
"""

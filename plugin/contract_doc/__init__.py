"""`groupspec contract doc` and `groupspec contract log`: the contract written down for the people who build
segments on it (`build.py` says what the page holds, `markdown.py` / `html.py` render it), and its change log
(`history.py` reads the versions, `contract_diff` classifies the changes)."""

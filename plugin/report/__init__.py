"""The coverage report: numbers (`collect`), a terminal view (`terminal`), an HTML page (`html`)."""

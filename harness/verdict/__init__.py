"""The verdict: typed findings (findings.py), the judgement of a paired difference that the verdict
and the gate share (judge.py), the rules that make a verdict (decide.py) and the one place it
becomes English (text.py)."""

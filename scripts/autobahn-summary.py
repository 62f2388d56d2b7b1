"""Summarizes one agent's Autobahn|Testsuite results by section, as a Markdown table.

    autobahn-summary.py REPORT_DIR AGENT SPEC_JSON

REPORT_DIR holds the suite's index.json; SPEC_JSON is the spec the run used, whose "cases"
and "exclude-cases" say which cases must have a result. Runs under the suite's own
Python 2.7 (scripts/autobahn.sh does so) to resolve those patterns with the suite's case
list; the code is also valid Python 3.

Prints a table with one row per section (1 Framing ... 13 permessage-deflate parameters)
and a total row, then every case that is not OK. A case whose closing behaviour FAILED
counts as FAILED whatever its message behaviour; a case of the spec without a result
(the testee stopped or crashed) counts as MISSING.

Exit status: 0 when every case is OK or INFORMATIONAL; 1 when one is NON-STRICT,
UNIMPLEMENTED, FAILED or MISSING; 2 when the agent has no results at all.
"""
from __future__ import print_function

import json
import os
import sys

from autobahntestsuite.case import CaseBasename, CaseCategories, Cases, CaseSetname, CaseSubCategories
from autobahntestsuite.caseset import CaseSet

KINDS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "MISSING"]
ACCEPTED = ("OK", "INFORMATIONAL")


def case_key(case):
    return tuple(int(part) for part in case.split("."))


def judge(result):
    if result is None:
        return "MISSING"
    behavior = result.get("behavior")
    if result.get("behaviorClose") == "FAILED":
        return "FAILED"
    return behavior if behavior in KINDS else "FAILED"


def main():
    if len(sys.argv) != 4:
        print("usage: autobahn-summary.py REPORT_DIR AGENT SPEC_JSON", file=sys.stderr)
        return 64
    report_dir, agent, spec_path = sys.argv[1:]
    with open(spec_path) as spec_file:
        spec = json.load(spec_file)
    expected = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories).parseSpecCases(spec)
    index_path = os.path.join(report_dir, "index.json")
    results = {}
    if os.path.exists(index_path):
        with open(index_path) as index_file:
            results = json.load(index_file).get(agent, {})
    if not results:
        print("autobahn-summary: no results for agent %r in %s" % (agent, index_path), file=sys.stderr)
        return 2

    sections = {}
    totals = dict((kind, 0) for kind in KINDS)
    not_ok = []
    for case in sorted(set(expected) | set(results), key=case_key):
        verdict = judge(results.get(case))
        section = case.split(".")[0]
        sections.setdefault(section, dict((kind, 0) for kind in KINDS))[verdict] += 1
        totals[verdict] += 1
        if verdict != "OK":
            result = results.get(case) or {}
            not_ok.append((case, verdict, result.get("behaviorClose", "-"), result.get("remoteCloseCode")))

    shown = [kind for kind in KINDS if kind != "MISSING" or totals["MISSING"]]
    print("| section | " + " | ".join(shown) + " | total |")
    print("| --- | " + " | ".join("---:" for _ in shown) + " | ---: |")
    for section in sorted(sections, key=int):
        counts = sections[section]
        name = "%s %s" % (section, CaseCategories.get(section, ""))
        print("| %s | %s | %d |" % (name, " | ".join(str(counts[kind]) for kind in shown), sum(counts.values())))
    print("| **all** | %s | **%d** |" % (" | ".join("**%d**" % totals[kind] for kind in shown), sum(totals.values())))
    if not_ok:
        print()
        print("Not OK (case: verdict, closing behaviour, close code the testee sent):")
        for case, verdict, close, code in not_ok:
            print("- %s: %s, close %s, code %s" % (case, verdict, close, code))
    failing = [kind for kind in KINDS if kind not in ACCEPTED and totals[kind]]
    if failing:
        print("autobahn-summary: %s: %s" % (agent, ", ".join("%d %s" % (totals[k], k) for k in failing)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

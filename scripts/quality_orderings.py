"""The orderings the field expects, checked on a quality-table pipeline's summary.csv
(written by `pipeline`): each line says which two stages are compared on which column,
both numbers, and whether the ordering holds. Prints Markdown.

  /usr/bin/python3 scripts/quality_orderings.py experiments/quality_table/summary.csv
"""
import csv
import sys

# (what, better stage, worse stage, column): lower is better for every column here.
ORDERINGS = [
    ("int8 closer than NF4", "int8", "nf4", "kl_mean"),
    ("NF4 closer than FP4", "nf4", "fp4", "kl_mean"),
    ("GPTQ closer than round-to-nearest (int4, g128)", "gptq_int4_g128", "rtn_int4_g128", "kl_mean"),
    ("AWQ closer than round-to-nearest (int4, g128)", "awq_int4_g128", "rtn_int4_g128", "kl_mean"),
    ("Wanda closer than magnitude (50%)", "wanda_50", "magnitude_50", "kl_mean"),
    ("SparseGPT closer than Wanda (50%)", "sparsegpt_50", "wanda_50", "kl_mean"),
    ("distilled student (kl) closer than the same student trained with ce only", "student_kl", "student_ce", "kl_mean"),
    ("distilled student (kl): lower perplexity than ce only", "student_kl", "student_ce", "perplexity"),
]


def main():
    rows = {r["stage"]: r for r in csv.DictReader(open(sys.argv[1]))}
    print("| ordering | column | better | worse | holds |")
    print("|---|---|---|---|---|")
    for what, a, b, col in ORDERINGS:
        if a not in rows or b not in rows or not rows[a].get(col) or not rows[b].get(col):
            print(f"| {what} | {col} | {a}: n/a | {b}: n/a | not measured |")
            continue
        x, y = float(rows[a][col]), float(rows[b][col])
        print(f"| {what} | {col} | {a}: {x:.5g} | {b}: {y:.5g} | {'yes' if x < y else '**no**'} |")


if __name__ == "__main__":
    main()

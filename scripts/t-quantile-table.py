#!/usr/bin/env python3
"""Writes governance/src/stats/t_quantiles.txt, the reference table the
Student-t quantile is tested against: for each degrees of freedom and
probability below, the quantile to 22 significant digits.

Each p is the 64-bit float the decimal names (the value the Rust test passes),
taken exactly. The quantile is the root of P(T > t) = 1 - p, with the tail
from mpmath's regularized incomplete beta function at 40 digits,
P(T > t) = I_x(df/2, 1/2) / 2 with x = df / (df + t^2), found by Newton steps
kept inside a bisection bracket. Needs mpmath (`pip install mpmath`).

Usage: scripts/t-quantile-table.py > governance/src/stats/t_quantiles.txt
"""

from mpmath import betainc, exp, log, loggamma, mp, mpf, nstr, pi

mp.dps = 40

DFS = (
    list(range(1, 31))
    + [40, 50, 60, 80, 100, 120, 150, 200, 250, 300, 400, 500, 750, 1000, 1500, 2000, 2048, 3000, 4000, 4095, 4096]
    + [8191, 8192, 10000, 65536, 10**6, 10**9, 10**12]
)
PS = [
    "0.5005", "0.51", "0.6", "0.75", "0.8425", "0.9", "0.95", "0.975", "0.99", "0.995", "0.9995",
    "0.999999", "0.999999999", "0.999999999999",
]


def tail(t, df):
    nu = mpf(df)
    return betainc(nu / 2, mpf(1) / 2, 0, nu / (nu + t * t), regularized=True) / 2


def density(t, df):
    nu = mpf(df)
    return exp(loggamma((nu + 1) / 2) - loggamma(nu / 2) - log(nu * pi) / 2 - (nu + 1) / 2 * log(1 + t * t / nu))


def quantile(df, p):
    q = 1 - mpf(float(p))
    lo, hi = mpf(0), mpf(1)
    while tail(hi, df) > q:
        lo, hi = hi, 2 * hi
    t = (lo + hi) / 2
    for _ in range(400):
        g = tail(t, df) - q
        if g > 0:
            lo = t
        else:
            hi = t
        step = g / density(t, df)
        nt = t + step
        if not lo < nt < hi:
            nt = (lo + hi) / 2
        if abs(nt - t) <= mpf(10) ** -34 * nt:
            return nt
        t = nt
    raise RuntimeError(f"no convergence for df {df}, p {p}")


def main():
    print("# df p t: the p quantile of Student's t with df degrees of freedom (scripts/t-quantile-table.py)")
    for df in DFS:
        for p in PS:
            print(df, p, nstr(quantile(df, p), 22, strip_zeros=False))


if __name__ == "__main__":
    main()

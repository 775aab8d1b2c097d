# scripts/plot-pipes-fit.gp: draws docs/img/pipes-fit.png from scripts/fit-pipes' data.
#
# Why this shape: the question is whether the cost of one loop iteration grows with the
# watched fds N (select, poll) or only with the ready events K (epoll, hark). One panel per
# system, x = N, y = ns per iteration, one colour per number of active pipes A (K = A): for
# an O(N) loop the lines rise together with N, for an O(K) loop they stay flat and apart.
# Points are measured (best round), solid lines are the fitted a + b N + c K, dashed lines
# (poll and select) add the wait-queue registration term d N / (2K). Both axes are
# logarithmic because N spans two decades and the systems four.
# One row per grid: idle (100 passing socketpairs spread over N, the rest idle) and chain
# (libevent's method, the bytes walk through all N).
#
# Variables (gnuplot -e): datadir (files <grid>-<system>.dat with "N A k ns" lines), out,
# systems, grids, actives (space-separated), a3_<grid>_<system>, b3_..., c3_... (the fit)
# and a4_..., b4_..., c4_..., d4_... (with the registration term).

set terminal pngcairo size 1600, 420 * words(grids) + 60 noenhanced font "sans,10"
set output out
set multiplot layout words(grids), words(systems) \
    title "pipes: ns per loop iteration against N watched fds; points measured (best round), lines a + b N + c K fitted"
set logscale x
set logscale y
set xrange [80:11000]
set yrange [1000:3e6]
set xtics ("100" 100, "300" 300, "1k" 1000, "3k" 3000, "9k" 9000)
set format y "%.0s%c"
set grid xtics ytics
set key top left box opaque
set style textbox opaque noborder
col(i) = i == 1 ? "#0072b2" : i == 2 ? "#e69f00" : i == 3 ? "#d55e00" : "#009e73"
# select stops at FD_SETSIZE: 2N + 3 fds below 1024, so N <= 510.
nmax(s) = s eq "select" ? 510 : 1e9
nan = NaN
do for [g in grids] {
    do for [s in systems] {
        set title sprintf("%s (grid=%s)", s, g)
        set xlabel "N watched"
        set ylabel "ns per iteration"
        a = value(sprintf("a3_%s_%s", g, s))
        b = value(sprintf("b3_%s_%s", g, s))
        c = value(sprintf("c3_%s_%s", g, s))
        a4 = value(sprintf("a4_%s_%s", g, s))
        b4 = value(sprintf("b4_%s_%s", g, s))
        c4 = value(sprintf("c4_%s_%s", g, s))
        d4 = value(sprintf("d4_%s_%s", g, s))
        f(x, k) = x <= nmax(s) ? a + b * x + c * k : nan
        f4(x, k) = x <= nmax(s) ? a4 + b4 * x + c4 * k + d4 * x / (2 * k) : nan
        # The registration term only matters where a scan registers wait-queue entries.
        reg = s eq "poll" || s eq "select"
        set label 1 sprintf("b = %.3f ns per fd", b) at graph 0.97, 0.55 right front boxed
        set label 2 sprintf("c = %.0f ns per event", c) at graph 0.97, 0.48 right front boxed
        plot for [i = 1:words(actives)] sprintf("%s/%s-%s.dat", datadir, g, s) \
                 using 1:($2 == word(actives, i) + 0 ? $4 : nan) with points pt 7 ps 0.9 \
                 lc rgb col(i) title sprintf("A = %s", word(actives, i)), \
             for [i = 1:words(actives)] f(x, word(actives, i) + 0) with lines lw 2 \
                 lc rgb col(i) notitle, \
             for [i = 1:words(actives)] (reg ? f4(x, word(actives, i) + 0) : nan) with lines \
                 lw 1 dt 2 lc rgb col(i) title (i == 1 && reg ? "+ d N/(2K), dashed" : "")
        unset label 1
        unset label 2
    }
}
unset multiplot

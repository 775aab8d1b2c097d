# scripts/plot-pipes.gp: draws docs/img/pipes.png from scripts/bench-pipes' data.
#
# Why this shape: the point of the pipes benchmark is how cost per event grows
# with the number of watched fds N, so x is N, and y is logarithmic because
# poll and select grow by orders of magnitude where the epoll loops stay flat.
# One panel per number of active pipes A, one line per system, and one more for
# grid idle (A = 1, the byte among `idle` socketpairs, the other N watched and idle).
#
# Variables (gnuplot -e): datadir (files a<A>-<system>.dat and idle-<system>.dat with
# "N ns" lines), out (the PNG), systems and actives (space-separated lists), idle (the
# ring of grid idle; 0: no such panel).

panels = words(actives) + (idle > 0 ? 1 : 0)
set terminal pngcairo size 700 * panels, 600 noenhanced font "sans,11"
set output out
set multiplot layout 1, panels title "pipes: ns per event against N (best of the rounds; lower is better)"
set logscale x
set logscale y
set xrange [70:13000]
set xtics ("100" 100, "1000" 1000, "3000" 3000, "6000" 6000, "9000" 9000)
set format y "%.0f"
set xlabel "N socketpairs watched"
set ylabel "ns per event"
set grid xtics ytics mytics
set key top left
set style data linespoints
# Fixed colours, so that a system keeps its colour from run to run; hark is black and bold,
# hark-nometrics black and dashed.
col(s) = s[1:4] eq "hark" ? "#000000" : s eq "epoll" ? "#8c8c8c" : s eq "libev" ? "#009e73" : \
    s eq "libevent" ? "#0072b2" : s eq "libuv" ? "#e69f00" : s eq "poll" ? "#d55e00" : \
    s eq "select" ? "#cc79a7" : "#56b4e9"
width(s) = s eq "hark" ? 3 : 1.5
dash(s) = s eq "hark-nometrics" ? 2 : 1

do for [i = 1:words(actives)] {
    a = word(actives, i)
    set title sprintf("A = %s active", a)
    plot for [s in systems] sprintf("%s/a%s-%s.dat", datadir, a, s) \
        using 1:2 title s lc rgb col(s) lw width(s) dt dash(s) pt 7 ps 0.8
}
if (idle > 0) {
    set title sprintf("A = 1, the byte among %d of the N (grid idle)", idle)
    plot for [s in systems] sprintf("%s/idle-%s.dat", datadir, s) \
        using 1:2 title s lc rgb col(s) lw width(s) dt dash(s) pt 7 ps 0.8
}
unset multiplot

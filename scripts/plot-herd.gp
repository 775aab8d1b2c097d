# scripts/plot-herd.gp: draws docs/img/herd-model.png from scripts/bench-herd's data.
#
# Why this shape: the model says how many loops the kernel wakes per connection (T for
# plain, 1 for exclusive and reuseport, 2 - 1/T for handoff), so the left panel puts the
# measured loop wake-ups (points: filled for hark, open for the raw epoll server) on the
# model's lines, against T on a log scale; crosses are hark's own count of listener callbacks
# (and hand-off wake-ups), which for plain stays near 1 because the losers of each race go
# back to sleep inside epoll_wait without returning. The right panel is the other half of choosing a
# mode: how evenly the connections are shared (Jain's index, 1 = even, 1/T = one loop takes
# all), measured against the share model (dashed; plain has none).
#
# Variables (gnuplot -e): datadir (files <system>-<mode>.dat with lines
# "T loop_wakeups predicted jain predicted_jain max_over_mean conns callbacks"), out.

set terminal pngcairo size 1400, 560 noenhanced font "sans,11"
set output out
modes = "plain exclusive reuseport handoff"
col(m) = m eq "plain" ? "#d55e00" : m eq "exclusive" ? "#0072b2" : m eq "reuseport" ? "#009e73" : "#e69f00"
set multiplot layout 1, 2 title "bench/herd: T loops accepting on one address, one connection at a time"
set logscale x 2
set xrange [0.8:40]
set xtics (1, 2, 4, 8, 16, 32)
set xlabel "T loops (threads)"
set grid xtics ytics

set title "kernel wake-ups per connection: measured (points) and model (lines; exclusive = reuseport = 1)"
set logscale y
set yrange [0.7:50]
set ylabel "loop wake-ups per accepted connection"
set key top left box opaque
plot for [m in modes] sprintf("%s/hark-%s.dat", datadir, m) using 1:3 with lines lw 2 \
         lc rgb col(m) title sprintf("model %s", m), \
     for [m in modes] sprintf("%s/hark-%s.dat", datadir, m) using 1:2 with points pt 7 ps 1.3 \
         lc rgb col(m) title sprintf("hark %s", m), \
     for [m in "plain exclusive reuseport"] sprintf("%s/epoll-%s.dat", datadir, m) using 1:2 \
         with points pt 6 ps 2 lc rgb col(m) title sprintf("raw epoll %s", m), \
     for [m in modes] sprintf("%s/hark-%s.dat", datadir, m) using 1:8 with points pt 2 ps 1.2 \
         lc rgb col(m) title (m eq "plain" ? "hark listener callbacks (x)" : "")

set title "share of connections per loop: Jain's index"
unset logscale y
set yrange [0:1.05]
set ylabel "Jain's index (1 = even, 1/T = one loop takes all)"
set key bottom left box opaque
plot for [m in "exclusive reuseport handoff"] sprintf("%s/hark-%s.dat", datadir, m) using 1:5 \
         with lines lw 2 dt 2 lc rgb col(m) title sprintf("model %s", m), \
     for [m in modes] sprintf("%s/hark-%s.dat", datadir, m) using 1:4 with linespoints pt 7 \
         ps 1.3 lw 1 lc rgb col(m) title sprintf("hark %s", m)
unset multiplot

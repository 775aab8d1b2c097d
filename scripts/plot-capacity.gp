# scripts/plot-capacity.gp: draws docs/img/capacity.png from scripts/bench-capacity's data.
#
# Why this shape: a capacity model is right when the delivered rate follows the offered one
# up to the predicted knee and no further, with loss starting there. So the left
# panel is delivered against offered (the diagonal is "everything delivered"), with the
# prediction as dashed lines and the measured knee as a dotted one; the right panel is the
# loss. Each run is a small open point (a triangle when its reads cost more than 1.3 times the
# calibration's: the core was in its slow state), the median of the runs a filled one.
#
# Variables (gnuplot -e): datadir (runs.dat: "offered delivered loss% rep slow(0/1)",
# points.dat: "offered delivered loss%"), out, predicted, knee (pps; NaN if none).

set terminal pngcairo size 1400, 560 noenhanced font "sans,11"
set output out
set multiplot layout 1, 2 title "bench/capacity: UDP ingest on one core (hark loop, recvmmsg), 64-byte packets, 10,000 devices"
set grid xtics ytics
set xlabel "offered (k packets/s)"
set format x "%.0f"
set format y "%.0f"
set xrange [0:*]
set key top left box opaque

set title "delivered against offered"
set ylabel "delivered (k packets/s)"
set yrange [0:*]
set arrow 1 from predicted / 1000, graph 0 to predicted / 1000, graph 1 nohead dt 2 lw 2 lc rgb "#d55e00"
set arrow 2 from graph 0, first predicted / 1000 to graph 1, first predicted / 1000 nohead dt 2 lw 2 lc rgb "#d55e00"
if (knee == knee) {
    set arrow 3 from graph 0, first knee / 1000 to graph 1, first knee / 1000 nohead dt 3 lw 2 lc rgb "#0072b2"
}
plot x with lines lc rgb "#8c8c8c" title "delivered = offered", \
     NaN with lines dt 2 lw 2 lc rgb "#d55e00" title sprintf("predicted knee %.0f k/s", predicted / 1000), \
     NaN with lines dt 3 lw 2 lc rgb "#0072b2" title (knee == knee ? sprintf("measured knee %.0f k/s", knee / 1000) : "no knee"), \
     datadir . "/runs.dat" using ($1 / 1000):($5 > 0.5 ? NaN : $2 / 1000) with points pt 6 ps 0.8 lc rgb "#000000" title "runs", \
     datadir . "/runs.dat" using ($1 / 1000):($5 > 0.5 ? $2 / 1000 : NaN) with points pt 8 ps 0.9 lc rgb "#cc79a7" title "runs, slow reads", \
     datadir . "/points.dat" using ($1 / 1000):($2 / 1000) with linespoints pt 7 ps 1.2 lw 2 lc rgb "#000000" title "median"
unset arrow 2
unset arrow 3

set title "loss (received / sent)"
set ylabel "lost (%)"
set yrange [0:*]
set format y "%.1f"
plot datadir . "/runs.dat" using ($1 / 1000):($5 > 0.5 ? NaN : $3) with points pt 6 ps 0.8 lc rgb "#000000" title "runs", \
     datadir . "/runs.dat" using ($1 / 1000):($5 > 0.5 ? $3 : NaN) with points pt 8 ps 0.9 lc rgb "#cc79a7" title "runs, slow reads", \
     datadir . "/points.dat" using ($1 / 1000):3 with linespoints pt 7 ps 1.2 lw 2 lc rgb "#000000" title "median", \
     NaN with lines dt 2 lw 2 lc rgb "#d55e00" title "predicted knee"
unset multiplot

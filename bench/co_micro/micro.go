// The Go peer of bench-co-micro: the same tests, measured the same way, printed
// as `co system=go test=TEST value=V unit=U`. Standard library only; built by
// scripts/bench-co with go build. Timed tests run with GOMAXPROCS=1 (as hark's
// run on one worker), a warm-up pass, then the best of 5.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
)

func yieldTest(rounds int) float64 {
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(2)
	for k := 0; k < 2; k++ {
		go func() {
			for i := 0; i < rounds; i++ {
				runtime.Gosched()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	return float64(time.Since(t0).Nanoseconds()) / float64(2*rounds)
}

func chanTest(rounds int) float64 {
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
	}()
	t0 := time.Now()
	for i := 0; i < rounds; i++ {
		ping <- i
		<-pong
	}
	ns := float64(time.Since(t0).Nanoseconds()) / float64(2*rounds)
	close(ping)
	return ns
}

func spawnTest(rounds int) float64 {
	const batch = 1000
	var wg sync.WaitGroup
	t0 := time.Now()
	for done := 0; done < rounds; done += batch {
		wg.Add(batch)
		for i := 0; i < batch; i++ {
			go func() { wg.Done() }()
		}
		wg.Wait()
	}
	return float64(time.Since(t0).Nanoseconds()) / float64(rounds)
}

func rss() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), "VmRSS:") {
			var kb int64
			fmt.Sscanf(strings.TrimPrefix(s.Text(), "VmRSS:"), "%d", &kb)
			return kb * 1024
		}
	}
	return -1
}

func memTest() float64 {
	const parked = 1000000
	gate := make(chan struct{})
	var ready sync.WaitGroup
	ready.Add(parked)
	before := rss()
	for i := 0; i < parked; i++ {
		go func() {
			ready.Done()
			<-gate
		}()
	}
	ready.Wait()
	after := rss()
	close(gate)
	return float64(after-before) / parked
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: co-micro-go yield|chan|spawn|mem")
		os.Exit(2)
	}
	test := os.Args[1]
	if test == "mem" {
		runtime.GOMAXPROCS(2)
		fmt.Printf("co system=go test=mem value=%.1f unit=bytes\n", memTest())
		return
	}
	runtime.GOMAXPROCS(1)
	var f func() float64
	switch test {
	case "yield":
		f = func() float64 { return yieldTest(5000000) }
	case "chan":
		f = func() float64 { return chanTest(2000000) }
	case "spawn":
		f = func() float64 { return spawnTest(2000000) }
	default:
		fmt.Fprintln(os.Stderr, "unknown test", test)
		os.Exit(2)
	}
	f()
	best := 0.0
	for p := 0; p < 5; p++ {
		if v := f(); best == 0 || v < best {
			best = v
		}
	}
	fmt.Printf("co system=go test=%s value=%.1f unit=ns\n", test, best)
}

/// Smooth weighted round robin by stride scheduling: each member advances its "pass" by
/// 1/weight when picked, and the member with the lowest pass goes next. Heavier members come
/// up proportionally more often, interleaved with the others rather than in bursts. A binary
/// heap makes each pick O(log n).
struct StrideScheduler {
    private var heap: [(pass: Double, local: Int32)]
    private let strides: [Double]

    init(weights: [Int32]) {
        strides = weights.map { 1.0 / Double($0) }
        // Members of equal weight start spread across their stride rather than together, so
        // they are interleaved with the others instead of arriving back to back.
        var countByWeight: [Int32: Int] = [:]
        for w in weights { countByWeight[w, default: 0] += 1 }
        var rank: [Int32: Int] = [:]
        heap = []
        heap.reserveCapacity(weights.count)
        for (i, w) in weights.enumerated() {
            let r = rank[w, default: 0]
            rank[w] = r + 1
            let offset = (Double(r) + 0.5) / Double(countByWeight[w]!)
            heap.append((pass: strides[i] * offset, local: Int32(i)))
        }
        heap.sort { Self.less($0, $1) }  // a sorted array is a valid min-heap
    }

    @inline(__always)
    static func less(_ a: (pass: Double, local: Int32), _ b: (pass: Double, local: Int32)) -> Bool {
        a.pass < b.pass || (a.pass == b.pass && a.local < b.local)
    }

    mutating func next() -> Int {
        let local = heap[0].local
        heap[0].pass += strides[Int(local)]
        siftDown(0)
        return Int(local)
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        let n = heap.count
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < n && Self.less(heap[l], heap[m]) { m = l }
            if r < n && Self.less(heap[r], heap[m]) { m = r }
            if m == i { return }
            heap.swapAt(i, m)
            i = m
        }
    }
}

/// least_conn: the member with the lowest (active + 1) / weight goes next. An indexed binary
/// heap keeps the minimum at the top; a pick or a release moves one member, O(log n).
struct LeastConnHeap {
    private(set) var active: [Int]
    private let weights: [Double]
    private var heap: [Int32]  // local indices
    private var position: [Int32]  // local index -> heap slot

    init(weights: [Int32]) {
        self.weights = weights.map { Double($0) }
        active = Array(repeating: 0, count: weights.count)
        heap = (0..<Int32(weights.count)).map { $0 }
        position = heap
        // All scores are 1/weight at start: order by that.
        heap.sort { (1.0 / self.weights[Int($0)], $0) < (1.0 / self.weights[Int($1)], $1) }
        for (slot, local) in heap.enumerated() { position[Int(local)] = Int32(slot) }
    }

    var top: Int { Int(heap[0]) }

    @inline(__always)
    func score(_ local: Int) -> Double { Double(active[local] + 1) / weights[local] }

    @inline(__always)
    private func less(_ a: Int32, _ b: Int32) -> Bool {
        let sa = score(Int(a)), sb = score(Int(b))
        return sa < sb || (sa == sb && a < b)
    }

    mutating func adjust(_ local: Int, by delta: Int) {
        active[local] = max(0, active[local] + delta)
        let slot = Int(position[local])
        if delta > 0 { siftDown(slot) } else { siftUp(slot) }
    }

    private mutating func swapSlots(_ a: Int, _ b: Int) {
        heap.swapAt(a, b)
        position[Int(heap[a])] = Int32(a)
        position[Int(heap[b])] = Int32(b)
    }

    private mutating func siftUp(_ start: Int) {
        var i = start
        while i > 0 {
            let parent = (i - 1) / 2
            if less(heap[i], heap[parent]) {
                swapSlots(i, parent)
                i = parent
            } else {
                return
            }
        }
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        let n = heap.count
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < n && less(heap[l], heap[m]) { m = l }
            if r < n && less(heap[r], heap[m]) { m = r }
            if m == i { return }
            swapSlots(i, m)
            i = m
        }
    }
}

/// ewma: an exponentially weighted moving average of response time per member, decaying with
/// a 10 s time constant, scaled by in-flight requests. Picks use power of two choices.
struct EWMAState {
    var latency: [Double]
    var lastUpdate: [UInt64]
    var inFlight: [Int]
    static let decayNanos: Double = 10_000_000_000

    init(count: Int) {
        latency = Array(repeating: 0, count: count)
        lastUpdate = Array(repeating: 0, count: count)
        inFlight = Array(repeating: 0, count: count)
    }

    func score(_ local: Int) -> Double { latency[local] * Double(inFlight[local] + 1) }

    mutating func observe(_ local: Int, latencyNanos: UInt64, now: UInt64) {
        let sample = Double(latencyNanos)
        if lastUpdate[local] == 0 {
            latency[local] = sample
        } else {
            let dt = Double(now &- lastUpdate[local])
            let w = dt > 0 ? exp(-dt / Self.decayNanos) : 1
            latency[local] = latency[local] * w + sample * (1 - w)
        }
        lastUpdate[local] = now
    }
}

/// e^x without Foundation; for the small negative arguments EWMA uses.
@inline(__always)
func exp(_ x: Double) -> Double {
    if x < -30 { return 0 }
    // Range reduction: e^x = (e^(x/2^k))^(2^k).
    var k = 0
    var y = x
    while y < -0.5 { y /= 2; k += 1 }
    // Taylor series around 0, |y| <= 0.5.
    var term = 1.0, sum = 1.0
    for n in 1...12 {
        term *= y / Double(n)
        sum += term
    }
    for _ in 0..<k { sum *= sum }
    return sum
}

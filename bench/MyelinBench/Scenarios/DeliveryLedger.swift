import Synchronization

/// Every message a run sends and every delivery of it that a receiver's sync returned:
/// send and delivery latencies, lost deliveries (expected, never seen), and the per-interval
/// counters of the running table. Shared by senders and sync loops.
final class DeliveryLedger: Sendable {
    private struct Message {
        var expected: Int32
        var delivered: Int32 = 0
        var acked = false
    }

    struct Counters {
        var attempted = 0       // sends started
        var acked = 0           // sends answered 200
        var skipped = 0         // ticks of the offered rate with every connection of the sender busy
        var deliveries = 0      // (receiver, message) pairs seen in sync responses
        var duplicates = 0      // the same message more often than expected
        var limitedTimelines = 0
        var pending = 0         // deliveries of acknowledged messages not seen yet
        var expected = 0        // deliveries of acknowledged messages in all
    }

    private let state = Mutex<(messages: [Int64: Message], total: Counters, interval: Counters)>(([:], Counters(), Counters()))
    let deliveryLatency = LatencyRecorder()
    let sendLatency = LatencyRecorder()

    func sending(_ id: Int64, expected: Int) {
        state.withLock { s in
            s.messages[id] = Message(expected: Int32(expected))
            s.total.attempted += 1
            s.interval.attempted += 1
        }
    }

    func skipped() {
        state.withLock { s in
            s.total.skipped += 1
            s.interval.skipped += 1
        }
    }

    func acked(_ id: Int64, nanos: UInt64) {
        sendLatency.record(nanos: nanos)
        state.withLock { s in
            guard var m = s.messages[id], !m.acked else { return }
            m.acked = true
            s.messages[id] = m
            s.total.acked += 1
            s.interval.acked += 1
            s.total.expected += Int(m.expected)
            s.total.pending += max(0, Int(m.expected - m.delivered))
        }
    }

    func delivered(_ id: Int64, sentAt t0: UInt64, now: UInt64) {
        deliveryLatency.record(nanos: now &- t0)
        state.withLock { s in
            s.total.deliveries += 1
            s.interval.deliveries += 1
            guard var m = s.messages[id] else { return }
            m.delivered += 1
            if m.delivered > m.expected {
                s.total.duplicates += 1
            } else if m.acked {
                s.total.pending -= 1
            }
            s.messages[id] = m
        }
    }

    func limitedTimeline() {
        state.withLock { $0.total.limitedTimelines += 1 }
    }

    var total: Counters { state.withLock { $0.total } }

    func takeInterval() -> Counters {
        state.withLock { s in
            let c = s.interval
            s.interval = Counters()
            return c
        }
    }
}

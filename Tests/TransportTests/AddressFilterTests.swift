import Glibc
import TestSupport
import Testing
@testable import Transport

/// The address filter (IP blocks): its compiled table against a plain scan of the rules, and
/// refusal at accept over real sockets (a second client address, 127.0.0.2).
@Suite("Address filter")
struct AddressFilterTests {
    /// The rules' meaning, the slow way: blocked if any unexpired rule contains the address.
    static func naive(_ rules: [AddressFilter.Rule], _ address: IPAddress, now: Int64) -> Bool {
        let judged = address.embeddedIPv4 ?? address
        return rules.contains { rule in
            (rule.expiresAtMs ?? Int64.max) > now && (rule.range.contains(judged) || rule.range.contains(address))
        }
    }

    @Test func compiledTableAgreesWithAScanOfTheRules() throws {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<40 {
            // Few distinct prefixes so that ranges nest, overlap in time and repeat.
            var rules: [AddressFilter.Rule] = []
            for _ in 0..<Int.random(in: 1...60, using: &generator) {
                let bytes: [UInt8] = [10, UInt8.random(in: 0...3), UInt8.random(in: 0...3), UInt8.random(in: 0...7)]
                let prefix = [8, 16, 24, 30, 32, 31, 20].randomElement(using: &generator)!
                let expiry: Int64? = [nil, 500, 1500, 2500].randomElement(using: &generator)!
                rules.append(.init(range: IPRange(network: IPAddress(bytes: bytes)!, prefixLength: prefix), expiresAtMs: expiry))
            }
            if round % 5 == 0 { rules.append(.init(range: IPRange("0.0.0.0/0")!, expiresAtMs: 700)) }
            if round % 7 == 0 { rules.append(.init(range: IPRange("255.255.255.255/32")!)) }
            let table = AddressFilter.Table(rules: rules)
            for now: Int64 in [0, 1000, 2000, 3000] {
                for _ in 0..<300 {
                    let probe = IPAddress(bytes: [[10, 10, 9, 255].randomElement(using: &generator)!, UInt8.random(in: 0...4),
                                                  UInt8.random(in: 0...4), UInt8.random(in: 0...255)])!
                    #expect(table.blocks(probe, nowMs: now) == Self.naive(rules, probe, now: now), "\(probe) at \(now) in \(rules)")
                }
                #expect(table.blocks(IPAddress("255.255.255.255")!, nowMs: now) == Self.naive(rules, IPAddress("255.255.255.255")!, now: now))
            }
        }
    }

    @Test func ipv6RangesAndMappedAddresses() throws {
        let rules: [AddressFilter.Rule] = [
            .init(range: IPRange("2001:db8::/32")!),
            .init(range: IPRange("2001:db8:1::/48")!, expiresAtMs: 100),
            .init(range: IPRange("::ffff:192.0.2.0/120")!),  // an IPv4-mapped range is the IPv4 range
            .init(range: IPRange("::/0")!, expiresAtMs: 10),
            .init(range: IPRange("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")!),
        ]
        let table = AddressFilter.Table(rules: rules)
        #expect(table.blocks(IPAddress("2001:db8:1::5")!, nowMs: 200))
        #expect(table.blocks(IPAddress("2001:db8:ffff::1")!, nowMs: 200))
        #expect(!table.blocks(IPAddress("2001:db9::1")!, nowMs: 200))
        #expect(table.blocks(IPAddress("2001:db9::1")!, nowMs: 5))  // ::/0 until 10
        #expect(table.blocks(IPAddress("192.0.2.77")!, nowMs: 200))
        #expect(table.blocks(IPAddress("::ffff:192.0.2.77")!, nowMs: 200))
        #expect(!table.blocks(IPAddress("192.0.3.1")!, nowMs: 200))
        #expect(table.blocks(IPAddress("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")!, nowMs: 200))
        #expect(AddressFilter.Table(rules: []).isEmpty)
    }

    @Test func tenThousandRangesCompileToSortedDisjointIntervals() throws {
        var rules: [AddressFilter.Rule] = []
        for i in 0..<10_000 {
            rules.append(.init(range: IPRange(network: IPAddress(bytes: [11, UInt8(i >> 8 & 0xff), UInt8(i & 0xff), 0])!, prefixLength: 24)))
        }
        let table = AddressFilter.Table(rules: rules)
        // Adjacent /24s without expiry merge into one interval.
        #expect(table.intervalCount == 1)
        #expect(table.blocks(IPAddress("11.39.15.200")!, nowMs: 0))
        #expect(!table.blocks(IPAddress("12.0.0.1")!, nowMs: 0))
    }

    /// The peer's first read: no byte at all, and the end of the connection (EOF or reset).
    static func refusedWithoutAByte(_ client: RawClient) async -> Bool {
        client.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        let got = await client.fillAsync()
        return !got && client.buffer.isEmpty
    }

    @Test func blockedPeerIsClosedAtAcceptBeforeTheParserSeesIt() async throws {
        let filter = AddressFilter()
        var configuration = TransportConfiguration(loops: 2, host: "127.0.0.1", port: 0)
        configuration.maxConnectionsPerIP = 0
        let server = HTTPServer(configuration: configuration, responder: TestResponder(), addressFilter: filter)
        let port = try await server.start()
        // Served before the block, from both addresses.
        let before = try RawClient(port: port, source: "127.0.0.2")
        #expect(try await before.request("GET", "/hello").text == "hello")
        let parsed = server.requestsParsed
        filter.replace([.init(range: IPRange("127.0.0.2/32")!)])
        for _ in 0..<3 {
            let blocked = try RawClient(port: port, source: "127.0.0.2")
            #expect(await Self.refusedWithoutAByte(blocked))
        }
        #expect(filter.refusedConnections == 3)
        // Nothing of theirs reached the parser.
        #expect(server.requestsParsed == parsed)
        // Another loopback address is unaffected.
        let other = try RawClient(port: port, source: "127.0.0.1")
        #expect(try await other.request("GET", "/hello").text == "hello")
        // An expired block stops applying without a new table.
        filter.replace([.init(range: IPRange("127.0.0.0/24")!, expiresAtMs: AddressFilter.wallClockMs() + 300)])
        let during = try RawClient(port: port, source: "127.0.0.2")
        #expect(await Self.refusedWithoutAByte(during))
        try await Task.sleep(for: .milliseconds(600))
        let after = try RawClient(port: port, source: "127.0.0.2")
        #expect(try await after.request("GET", "/hello").text == "hello")
        server.shutdown()
        await server.waitUntilStopped()
    }
}

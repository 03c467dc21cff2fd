import Matrix
import Testing
@testable import Actors

struct StreamTokenTests {
    @Test func roundTrips() throws {
        var token = StreamToken.zero
        token[.roomEvents] = 12
        token[.accountData] = 4
        token[.deviceLists] = 9_000_000_000
        #expect(token.serialized == "s12_4_0_0_0_0_9000000000")
        #expect(try StreamToken(parsing: token.serialized) == token)
        #expect(try StreamToken(parsing: "s0_0_0_0_0_0_0") == .zero)
    }

    @Test func olderShorterTokensStayValid() throws {
        let token = try StreamToken(parsing: "s5_6")
        #expect(token[.roomEvents] == 5)
        #expect(token[.accountData] == 6)
        #expect(token[.deviceLists] == 0)
    }

    @Test(arguments: ["", "s", "x1_2", "s1__2", "s1_2_", "s-1", "s1_a", "s+1", "s 1",
                      "s1_2_3_4_5_6_7_8", "s99999999999999999999", "S1_2", "s１"])
    func rejectsMalformed(_ text: String) {
        #expect(throws: MatrixError.self) { try StreamToken(parsing: text) }
        do { _ = try StreamToken(parsing: text) } catch let error as MatrixError {
            #expect(error.code == .invalidParam)
        } catch { Issue.record("unexpected \(error)") }
    }

    @Test func comparesAndMerges() {
        let a = StreamToken([.roomEvents: 5, .typing: 1])
        let b = StreamToken([.roomEvents: 3, .receipts: 2])
        #expect(a.isAhead(of: b))
        #expect(b.isAhead(of: a))
        #expect(!a.isAhead(of: a))
        let union = a.union(b)
        #expect(union == StreamToken([.roomEvents: 5, .typing: 1, .receipts: 2]))
        #expect(a.advanced(.roomEvents, to: 4) == a)
        #expect(a.advanced(.roomEvents, to: 6)[.roomEvents] == 6)
    }
}

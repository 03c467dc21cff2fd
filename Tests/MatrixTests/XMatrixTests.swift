import Testing
@testable import Matrix

/// Server-server API "Request Authentication": the X-Matrix header and the signed request JSON.
@Suite struct XMatrixTests {
    @Test func parsesTheSpecificationExample() throws {
        let auth = try XMatrixAuthorization(parsing: #"X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF...""#)
        #expect(auth.origin.rawValue == "origin.hs.example.com")
        #expect(auth.destination?.rawValue == "destination.hs.example.com")
        #expect(auth.keyID == "ed25519:key1")
        #expect(auth.signature == "ABCDEF...")
    }

    @Test func acceptsEveryFormRFC9110Allows() throws {
        // Scheme and names in any case, several spaces after the scheme, spaces and tabs
        // around commas, any order, unquoted tokens, unquoted colons (older senders),
        // backslash escapes, unknown parameters ignored, destination absent.
        let auth = try XMatrixAuthorization(parsing: "x-MATRIX   Sig=\"a\\bc/+\" ,\tKEY=ed25519:k_1 , unknown=\"x,y\",ORIGIN=example.org:8448")
        #expect(auth.origin.rawValue == "example.org:8448")
        #expect(auth.destination == nil)
        #expect(auth.keyID == "ed25519:k_1")
        #expect(auth.signature == "abc/+")
    }

    @Test func refusesMalformedHeadersWith401() {
        let bad = [
            "",
            "Bearer abc",
            "X-Matrixorigin=a,key=ed25519:1,sig=x",
            "X-Matrix origin=a,key=ed25519:1",                     // no sig
            "X-Matrix key=ed25519:1,sig=x",                        // no origin
            "X-Matrix origin=\"a,key=ed25519:1,sig=x",             // unterminated quote
            "X-Matrix origin=a,origin=b,key=ed25519:1,sig=x",      // repeated
            "X-Matrix origin=a key=ed25519:1,sig=x",               // no comma
            "X-Matrix origin=a,key=ed25519,sig=x",                 // key without algorithm
            "X-Matrix origin=a,destination=\"\",key=ed25519:1,sig=x",
            "X-Matrix origin=a,key=ed25519:1,sig=" + String(repeating: "A", count: 5_000),
        ]
        for header in bad {
            #expect(throws: MatrixError.self) { try XMatrixAuthorization(parsing: header) }
            do { _ = try XMatrixAuthorization(parsing: header) } catch { #expect(error.status == 401 && error.code == .unauthorized) }
        }
    }

    @Test("An origin that is not a server name (a non-numeric port) is a bad request: 400 M_UNAUTHORIZED")
    func refusesMalformedOriginWith400() {
        for header in ["X-Matrix origin=bad_name!,key=ed25519:1,sig=x", "X-Matrix origin=\"localhost:http\",key=ed25519:1,sig=x"] {
            do {
                _ = try XMatrixAuthorization(parsing: header)
                Issue.record("accepted \(header)")
            } catch { #expect(error.status == 400 && error.code == .unauthorized) }
        }
    }

    @Test func formatsWhatItParses() throws {
        let auth = XMatrixAuthorization(origin: try ServerName(parsing: "a.example"), destination: try ServerName(parsing: "[::1]:8448"),
                                        keyID: "ed25519:x", signature: "s/g+")
        #expect(auth.headerValue == #"X-Matrix origin="a.example",destination="[::1]:8448",key="ed25519:x",sig="s/g+""#)
        #expect(try XMatrixAuthorization(parsing: auth.headerValue) == auth)
        #expect(XMatrixAuthorization.quoted(#"a"b\c"#) == #""a\"b\\c""#)
    }

    @Test func signatureIsTheJSONSigningOfTheRequestObject() throws {
        let content: JSON = ["pdus": [], "edus": [["edu_type": "m.typing"]]]
        let auth = try FederationRequestSignature.authorization(method: "PUT", uri: "/_matrix/federation/v1/send/1?x=%20y",
                                                                origin: "origin.example", destination: "dest.example",
                                                                content: content, key: testKey)
        // The same signature as the appendix's JSON signing of step 1's object.
        let signed = try testKey.sign(json: ["method": "PUT", "uri": "/_matrix/federation/v1/send/1?x=%20y", "origin": "origin.example",
                                             "destination": "dest.example", "content": content], entity: "origin.example")
        #expect(signed["signatures"]?["origin.example"]?["ed25519:1"]?.stringValue == auth.signature)
        #expect(auth.keyID == "ed25519:1")
        #expect(auth.origin.rawValue == "origin.example" && auth.destination?.rawValue == "dest.example")
        #expect(FederationRequestSignature.verify(auth, method: "PUT", uri: "/_matrix/federation/v1/send/1?x=%20y",
                                                  destination: "dest.example", content: content, key: testKey.verifyKey))
    }

    @Test func tamperingBreaksTheSignature() throws {
        let uri = "/_matrix/federation/v1/query/profile?user_id=%40a%3Ab"
        let auth = try FederationRequestSignature.authorization(method: "GET", uri: uri, origin: "o.example",
                                                                destination: "d.example", content: nil, key: testKey)
        let key = testKey.verifyKey
        #expect(FederationRequestSignature.verify(auth, method: "GET", uri: uri, destination: "d.example", content: nil, key: key))
        #expect(!FederationRequestSignature.verify(auth, method: "POST", uri: uri, destination: "d.example", content: nil, key: key))
        #expect(!FederationRequestSignature.verify(auth, method: "GET", uri: uri + "x", destination: "d.example", content: nil, key: key))
        #expect(!FederationRequestSignature.verify(auth, method: "GET", uri: uri, destination: "other.example", content: nil, key: key))
        #expect(!FederationRequestSignature.verify(auth, method: "GET", uri: uri, destination: "d.example", content: [:], key: key))
        #expect(!FederationRequestSignature.verify(auth, method: "GET", uri: uri, destination: "d.example", content: nil,
                                                   key: SigningKey.generate().verifyKey))
        var otherOrigin = auth
        otherOrigin.origin = try ServerName(parsing: "evil.example")
        #expect(!FederationRequestSignature.verify(otherOrigin, method: "GET", uri: uri, destination: "d.example", content: nil, key: key))
        var garbage = auth
        garbage.signature = "!!!"
        #expect(!FederationRequestSignature.verify(garbage, method: "GET", uri: uri, destination: "d.example", content: nil, key: key))
    }
}

import Glibc
import Testing
@testable import App

/// The configuration's YAML reader (`YAMLParser`): what configuration files are written
/// with reads as YAML reads it, and what it does not support is refused with its line.
@Suite("YAML")
struct YAMLTests {
    func plain(_ text: String) -> YAMLNode { .scalar(text, plain: true) }
    func quoted(_ text: String) -> YAMLNode { .scalar(text, plain: false) }
    func map(_ entries: (String, YAMLNode)...) -> YAMLNode { .mapping(entries.map { YAMLEntry(key: $0.0, value: $0.1) }) }

    @Test func nestedMappingsSequencesAndComments() throws {
        let text = """
            # Myelin
            ---
            server_name: example.org   # the name
            listeners:
              - port: 8008
                bind_addresses: ['127.0.0.1', "::1"]
                tls: false
              - port: 8448
            database:
              name: sqlite
              args: {path: "/var/lib/myelin/x.db", pool: 4}
            trusted:
            - a.org
            -   b.org
            empty:
            tilde: ~
            url: http://example.org:8008/#frag
            nested:
              - - 1
                - 2
              -
                k: v
            ...
            """
        let root = try #require(try YAMLParser.parse(text))
        #expect(root == map(
            ("server_name", plain("example.org")),
            ("listeners", .sequence([
                map(("port", plain("8008")), ("bind_addresses", .sequence([quoted("127.0.0.1"), quoted("::1")])), ("tls", plain("false"))),
                map(("port", plain("8448"))),
            ])),
            ("database", map(("name", plain("sqlite")),
                             ("args", map(("path", quoted("/var/lib/myelin/x.db")), ("pool", plain("4")))))),
            ("trusted", .sequence([plain("a.org"), plain("b.org")])),
            ("empty", plain("")),
            ("tilde", plain("~")),
            ("url", plain("http://example.org:8008/#frag")),
            ("nested", .sequence([.sequence([plain("1"), plain("2")]), map(("k", plain("v")))])),
        ))
        #expect(root.mapping?[4].value.isNull == true && root.mapping?[5].value.isNull == true)
        #expect(root.mapping?[0].value.isNull == false)
    }

    @Test func quotedScalarsAndEscapes() throws {
        let text = #"""
            a: "tab\there \"q\" \\ \u00e9 \x41 # not a comment"
            b: 'it''s # kept'
            "quoted key": yes
            c: "spans
              two lines"
            d: [1, [2, 3], {e: f},
                4]
            """#
        #expect(try YAMLParser.parse(text) == map(
            ("a", quoted("tab\there \"q\" \\ é A # not a comment")),
            ("b", quoted("it's # kept")),
            ("quoted key", plain("yes")),
            ("c", quoted("spans two lines")),
            ("d", .sequence([plain("1"), .sequence([plain("2"), plain("3")]), map(("e", plain("f"))), plain("4")])),
        ))
    }

    @Test func blockScalars() throws {
        let text = """
            literal: |
              line one
                indented

              after a blank
            folded: >
              one
              two

              three
            stripped: |-
              x

            kept: |+
              y

            next: z
            """
        #expect(try YAMLParser.parse(text) == map(
            ("literal", quoted("line one\n  indented\n\nafter a blank\n")),
            ("folded", quoted("one two\nthree\n")),
            ("stripped", quoted("x")),
            ("kept", quoted("y\n\n")),
            ("next", plain("z")),
        ))
    }

    @Test func emptyDocumentsAndScalarRoots() throws {
        #expect(try YAMLParser.parse("") == nil)
        #expect(try YAMLParser.parse("# only a comment\n\n") == nil)
        #expect(try YAMLParser.parse("---\n") == nil)
        #expect(try YAMLParser.parse("just text") == plain("just text"))
        #expect(try YAMLParser.parse("a: 1\r\nb: 2\r\n") == map(("a", plain("1")), ("b", plain("2"))))
    }

    @Test(arguments: [
        ("a: 1\n\tb: 2", 2, "tabs"),
        ("a: &x 1", 1, "anchors"),
        ("a: *x", 1, "aliases"),
        ("a: !!str 1", 1, "tags"),
        ("a: 1\na: 2", 2, "given twice"),
        ("a: 1\n  b: 2", 2, "indentation"),
        ("a:\n  b: 1\n c: 2", 3, "indentation"),
        ("a: [1, 2", 1, "not closed"),
        ("a: \"open", 1, "not closed"),
        ("a: {x: 1, x: 2}", 1, "given twice"),
        ("a: [1, &x 2]", 1, "anchors"),
        ("a: {k: *x}", 1, "aliases"),
        ("a: [@x]", 1, "quote it"),
        ("a: \"x\" y", 1, "unexpected text"),
        ("a: 1\n---\nb: 2", 2, "one document"),
        ("? complex\n: key", 1, "complex keys"),
        ("a: \"\\q\"", 1, "unknown escape"),
    ])
    func refusedWithTheirLine(_ text: String, _ line: Int, _ words: String) {
        do {
            let node = try YAMLParser.parse(text)
            Issue.record("parsed as \(String(describing: node))")
        } catch let error as YAMLError {
            #expect(error.line == line, "\(error)")
            #expect(error.message.contains(words), "\(error)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }
    /// The Matrix specification's OpenAPI and event-schema files (tests/fuzz/matrix-spec, 150
    /// files of long nested documents, block scalars, flow lists, quoted keys) all read. When
    /// this reader was written, every one of them read to the same values and scalar styles as
    /// PyYAML's composer.
    @Test func theSpecificationsYAMLFilesRead() throws {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)  // Tests/AppTests/YAMLTests.swift
        let root = parts.joined(separator: "/") + "/tests/fuzz/matrix-spec/data"
        var files: [String] = []
        func walk(_ directory: String) {
            guard let dir = opendir(directory) else { return }
            defer { closedir(dir) }
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name.hasPrefix(".") { continue }
                let path = directory + "/" + name
                if entry.pointee.d_type == UInt8(DT_DIR) { walk(path) } else if name.hasSuffix(".yaml") { files.append(path) }
            }
        }
        walk(root)
        #expect(files.count >= 100)
        for path in files {
            guard let file = fopen(path, "r") else { Issue.record("cannot open \(path)"); continue }
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while case let n = fread(&buffer, 1, buffer.count, file), n > 0 { bytes += buffer[0..<n] }
            fclose(file)
            do {
                let node = try YAMLParser.parse(String(decoding: bytes, as: UTF8.self))
                #expect(node?.mapping?.isEmpty == false, "\(path)")
                if path.hasSuffix("client-server/versions.yaml") {
                    #expect(node?.mapping?.first { $0.key == "openapi" }?.value == plain("3.1.0"))
                    let info = node?.mapping?.first { $0.key == "info" }?.value.mapping
                    #expect(info?.first { $0.key == "title" }?.value == plain("Matrix Client-Server Versions API"))
                }
            } catch {
                Issue.record("\(path): \(error)")
            }
        }
    }
}

import SluiceCore
import Testing

@Suite struct JSONPatchTests {
    let doc: JSONValue = ["a": ["b": 1, "list": [1, 2, 3]], "x~y": "t", "s/l": "u"]

    @Test func operationsApplyInOrder() throws {
        let out = try doc.applyingJSONPatch([
            ["op": "add", "path": "/a/c", "value": true],
            ["op": "remove", "path": "/a/list/0"],
            ["op": "add", "path": "/a/list/1", "value": 9],
            ["op": "replace", "path": "/a/b", "value": "two"],
            ["op": "move", "from": "/x~0y", "path": "/moved"],
            ["op": "copy", "from": "/s~1l", "path": "/copied"],
            ["op": "test", "path": "/copied", "value": "u"],
        ])
        #expect(out == ["a": ["b": "two", "c": true, "list": [2, 9, 3]], "moved": "t", "s/l": "u", "copied": "u"])
    }

    @Test func errorsNameTheOperationAndNothingChanges() {
        let cases: [(JSONValue, String)] = [
            ([["op": "remove", "path": "/nope"]], "[0].path"),
            ([["op": "replace", "path": "/a/list/7", "value": 1]], "[0].path"),
            ([["op": "add", "path": "/a/b", "value": 1], ["op": "frob", "path": "/a"]], "[1].op"),
            ([["op": "add", "path": "a"]], "[0].path"),
            ([["op": "add", "path": "/a/z"]], "[0].value"),
            ([["op": "test", "path": "/a/b", "value": 2]], "[0].path"),
            ([["op": "move", "path": "/a/z"]], "[0].from"),
            (["op": "add"], "patch"),
        ]
        for (patch, field) in cases {
            #expect(throws: JSONPatchError.self) { _ = try doc.applyingJSONPatch(patch) }
            do {
                _ = try doc.applyingJSONPatch(patch)
            } catch {
                #expect(error.field == field, "\(patch)")
            }
        }
    }
}

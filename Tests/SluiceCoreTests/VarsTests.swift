import SluiceCore
import Testing

final class DictionaryVariables: RequestVariableSource {
    let values: [RequestVariable: String]
    init(values: [RequestVariable: String]) { self.values = values }
    func value(of variable: RequestVariable) -> String? { values[variable] }
}

@Suite struct VarsTests {
    func eval(_ json: String, _ values: [RequestVariable: String]) throws -> Bool {
        try VarsExpression.parse(try JSONValue.parse(json), path: "vars").evaluate(DictionaryVariables(values: values))
    }

    @Test func comparisonOperators() throws {
        let v: [RequestVariable: String] = [.header("x-canary"): "1", .arg("n"): "42", .cookie("u"): "bob"]
        #expect(try eval(#"[["http_x_canary","==","1"]]"#, v))
        #expect(try !eval(#"[["http_x_canary","==","2"]]"#, v))
        #expect(try eval(#"[["http_x_canary","~=","2"]]"#, v))
        #expect(try eval(#"[["arg_n",">",41]]"#, v))
        #expect(try !eval(#"[["arg_n","<",42]]"#, v))
        #expect(try eval(#"[["arg_n",">=",42],["arg_n","<=","42"]]"#, v))
        #expect(try eval(#"[["cookie_u","~~","^b.b$"]]"#, v))
        #expect(try eval(#"[["cookie_u","~*","^BOB$"]]"#, v))
        #expect(try !eval(#"[["cookie_u","~~","^BOB$"]]"#, v))
        #expect(try eval(#"[["cookie_u","in",["alice","bob"]]]"#, v))
        #expect(try eval(#"[["cookie_u","!","in",["alice"]]]"#, v))
        #expect(try !eval(#"[["arg_missing","==","x"]]"#, v))
        #expect(try !eval(#"[["arg_n",">",1],["arg_missing",">",1]]"#, v))
    }

    @Test func hasAndIpmatchAndLogic() throws {
        let v: [RequestVariable: String] = [.header("accept"): "text/html, application/json", .remoteAddr: "10.2.3.4"]
        #expect(try eval(#"[["http_accept","has","application/json"]]"#, v))
        #expect(try !eval(#"[["http_accept","has","application"]]"#, v))
        #expect(try eval(#"[["remote_addr","ipmatch",["192.168.0.0/16","10.0.0.0/8"]]]"#, v))
        #expect(try eval(#"["OR",["remote_addr","ipmatch","1.1.1.1"],["http_accept","has","text/html"]]"#, v))
        #expect(try !eval(#"["!OR",["remote_addr","ipmatch","1.1.1.1"],["http_accept","has","text/html"]]"#, v))
        #expect(try eval(#"["AND",["remote_addr","ipmatch","10.0.0.0/8"],["OR",["http_accept","has","x"],["remote_addr","==","10.2.3.4"]]]"#, v))
    }

    /// `post_arg_*` parses, and an expression knows it reads the body (the gateway then
    /// reads form bodies before routing).
    @Test func postArgVariables() throws {
        let e = try VarsExpression.parse(try JSONValue.parse(#"["OR",["uri","==","/a"],["post_arg_k","==","v"]]"#), path: "vars")
        #expect(e.readsPostArgs)
        #expect(try eval(#"[["post_arg_k","==","v"]]"#, [.postArg("k"): "v"]))
        #expect(try !VarsExpression.parse(try JSONValue.parse(#"[["uri","==","/a"]]"#), path: "vars").readsPostArgs)
    }
}

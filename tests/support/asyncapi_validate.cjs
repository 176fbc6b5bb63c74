// Validate an AsyncAPI document with the official parser (@asyncapi/parser): its JSON
// Schema of the spec, the referenced schemas and its ruleset. Prints the diagnostics as
// JSON ({severity: 0 error | 1 warning | 2 info | 3 hint, code, message, path}); exits 1
// when the document does not parse. Usage: node asyncapi_validate.cjs FILE
// (@asyncapi/parser found through NODE_PATH; `make asyncapi-parser` installs it).
const { Parser, fromFile } = require("@asyncapi/parser");

async function main(file) {
  const { document, diagnostics } = await fromFile(new Parser(), file).parse();
  const found = diagnostics.map((d) => ({
    severity: d.severity,
    code: d.code,
    message: d.message,
    path: d.path.join("/"),
  }));
  process.stdout.write(JSON.stringify(found) + "\n");
  process.exit(document ? 0 : 1);
}

main(process.argv[2]).catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error) + "\n");
  process.exit(2);
});

"""The bare Flask "hello" app the benchmark compares the dashboard with."""
from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return "hello"

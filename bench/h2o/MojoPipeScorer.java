// Scores an H2O MOJO for rows read from stdin, one CSV line per row, and
// writes "label,p0,p1,..." per row: the "JVM as a separate process" bridge
// that bench/h2o_bridge.py measures against a JVM inside Python (JPype).
import hex.genmodel.MojoModel;
import hex.genmodel.easy.EasyPredictModelWrapper;
import hex.genmodel.easy.RowData;
import hex.genmodel.easy.prediction.MultinomialModelPrediction;
import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;

public class MojoPipeScorer {
    public static void main(String[] args) throws Exception {
        EasyPredictModelWrapper model = new EasyPredictModelWrapper(MojoModel.load(args[0]));
        String[] names = model.m.getNames();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        BufferedWriter out = new BufferedWriter(new OutputStreamWriter(System.out));
        String line;
        while ((line = in.readLine()) != null) {
            String[] values = line.split(",");
            RowData row = new RowData();
            for (int i = 0; i < values.length; i++) {
                row.put(names[i], Double.valueOf(values[i]));
            }
            MultinomialModelPrediction p = model.predictMultinomial(row);
            StringBuilder answer = new StringBuilder(p.label);
            for (double q : p.classProbabilities) {
                answer.append(',').append(q);
            }
            out.write(answer.toString());
            out.newLine();
            out.flush();
        }
    }
}
